"""Spreadsheet imports, row by row, without I/O: the same schemas as the API's bodies."""

import io

import pytest
from openpyxl import load_workbook

from services.common import reference
from services.gateway import imports, schemas
from services.gateway.coordination_routes import IMPORT_BODIES

REF = reference.load("deploy/reference")


def rows(kind, text, encoding="utf-8-sig"):
    table = imports.read_table(text.encode(encoding), "text/csv")
    return imports.rows_of(kind, table, IMPORT_BODIES[kind](), REF)


def test_a_csv_in_chinese_headers_becomes_the_apis_payloads_with_unknown_values_absent():
    got = rows("donations", "捐赠编号,来源（donated/purchased）,捐赠方/供应方,捐赠方类型,"
               "入库地点编号,类别,数量,单位,价值（元，未知可留空）\n"
               "D1,purchased,成都启毅农业科技有限公司,company,QY-S01-C01,thermometers,102,"
               "piece,\n"
               'D2,donated,华夏保险,company,QY,insurance,"1,000",policy,0\n')
    assert [r.ok for r in got] == [True, True]
    assert got[0].payload["donor"] == {"name": "成都启毅农业科技有限公司", "kind": "company"}
    assert "value_yuan" not in got[0].payload and got[0].payload["acquisition"] == "purchased"
    assert got[1].payload["quantity"] == 1000 and got[1].payload["value_yuan"] == 0


def test_excel_s_chinese_csv_encoding_is_read_too():
    got = rows("hours", "时长记录编号,志愿者编号,时长（小时）,日期,服务类别\nH1,V1,4.5,2020/2/15,"
               "counselling\n", encoding="gb18030")
    assert got[0].ok and got[0].payload["hours"] == 4.5
    assert got[0].payload["date"].isoformat() == "2020-02-15"


def test_each_wrong_row_says_which_cells_and_why():
    got = rows("needs", "need_id,community_id,kind,category,quantity,unit,urgency,beneficiaries\n"
               "N1,QY-S01-C01,goods,masks,60,piece,high,3\n"
               "N2,QY-S99-C01,goods,masks,60,piece,high,3\n"  # unknown community
               "N3,QY-S01-C01,goods,masks,-5,piece,urgent,2.5\n"
               "N1,QY-S01-C01,goods,masks,1,kg,high,\n"  # same id; kg does not count masks
               ",,,,,,,\n")  # blank: skipped
    assert [r.number for r in got] == [2, 3, 4, 5]
    assert got[0].ok
    assert "community_id" in got[1].errors
    assert {"quantity", "urgency", "beneficiaries"} <= set(got[2].errors)
    assert got[3].errors["need_id"] == "the same id as row 2" and "unit" in got[3].errors


def test_contacts_and_lists_are_flattened_columns():
    got = rows("volunteers", "volunteer id,home community id,skills (comma-separated),name,phone\n"
               "V1,QY-S01-C01,\"haircut，repair\",王芳,13912345678\n")
    assert got[0].payload["skills"] == ["haircut", "repair"]
    assert got[0].payload["contact"] == {"name": "王芳", "phone": "13912345678"}
    bad = rows("volunteers", "volunteer_id,home_community_id,contact_phone\nV1,QY-S01-C01,x\n")
    assert "contact_phone" in bad[0].errors


def test_files_that_cannot_be_read_are_refused_whole():
    with pytest.raises(imports.FileRefused, match="unknown columns: colour"):
        rows("needs", "need_id,colour\nN1,red\n")
    with pytest.raises(imports.FileRefused, match="rows"):
        rows("hours", "hours_id\n" + "H\n" * (imports.MAX_ROWS + 5))
    with pytest.raises(imports.FileRefused):
        imports.read_table(b"PK\x03\x04 not really a zip", "text/csv")
    with pytest.raises(imports.FileRefused):
        rows("needs", "")


@pytest.mark.parametrize("lang,first", [("zh-CN", "服务记录编号"), ("en", "delivery id")])
def test_a_filled_in_template_imports(lang, first):
    book = load_workbook(io.BytesIO(imports.template("deliveries", lang, "xlsx")))
    sheet = book.worksheets[0]
    assert sheet["A1"].value == first and sheet.freeze_panes == "A2"
    assert len(book.worksheets) == 2  # what each column takes
    sheet.append(["S1", "爱心益剪", "haircut", "2020-03-01", None, 400, 6, None, "是"])
    out = io.BytesIO()
    book.save(out)
    table = imports.read_table(out.getvalue(), "application/octet-stream")
    got = imports.rows_of("deliveries", table, IMPORT_BODIES["deliveries"](), REF)
    assert got[0].ok, got[0].errors
    assert got[0].payload["people_served"] == 400 and got[0].payload["approximate"] is True
    csv_template = imports.template("needs", lang, "csv").decode("utf-8")
    assert csv_template.startswith("\ufeff")


def test_every_import_uses_the_apis_own_body_schema():
    assert IMPORT_BODIES["needs"] is schemas.NeedBody
    assert IMPORT_BODIES["donations"] is schemas.DonationBody


def test_a_workbook_s_sheets_are_read_by_what_they_hold():
    from openpyxl import Workbook

    book = Workbook()
    people = book.active
    people.title = "志愿者"
    people.append(["volunteer_id", "home_community_id"])
    people.append(["V1", "QY-S01-C01"])
    hours = book.create_sheet("服务时长")
    hours.append(["hours_id", "volunteer_id", "hours", "date"])
    hours.append(["H1", "V1", 24, "2020-02-15"])
    book.create_sheet("说明").append(["what each column takes"])
    out = io.BytesIO()
    book.save(out)
    tables = imports.read_workbook(out.getvalue())
    assert set(tables) == {"volunteers", "hours"}
    got = imports.rows_of("hours", tables["hours"], IMPORT_BODIES["hours"](), REF)
    assert got[0].ok and got[0].payload["hours"] == 24
    book.create_sheet("cats")
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(imports.FileRefused, match="sheet 'cats'"):
        imports.read_workbook(out.getvalue())
    with pytest.raises(imports.FileRefused):
        imports.read_workbook(b"need_id\nN1\n")


def test_a_cell_is_read_as_its_column_takes_it():
    from datetime import date, datetime

    value = imports._value
    assert value("  ", "count") is None and value(None, "text") is None
    assert (value(3.0, "count"), value("1,234", "count"), value(7, "number")) == (3, 1234, 7.0)
    assert value(4.0, "text") == "4"  # an id typed as a number
    assert (value("是", "bool"), value("no", "bool")) == (True, False)
    assert value("haircut，repair, ", "list") == ["haircut", "repair"]
    assert value("2020/2/15", "day") == "2020-02-15"
    assert value(datetime(2020, 2, 15, 10, 30), "day") == "2020-02-15"
    assert value(date(2020, 2, 15), "moment") == "2020-02-15T23:59:59+08:00"
    assert value("2020/2/15", "moment") == "2020-02-15T23:59:59+08:00"  # the end of that day
    assert value(datetime(2020, 2, 15, 10, 30), "moment") == "2020-02-15T10:30:00+08:00"
    for raw, type_, why in ((True, "count", "not a whole number"), ("x", "bool", "yes or no"),
                            (True, "number", "not a number"), ("2020/13/1", "day", "not a date"),
                            ("x" * (imports.MAX_CELL_CHARS + 1), "text", "longer than")):
        with pytest.raises(ValueError, match=why):
            value(raw, type_)
