"""Bulk import from spreadsheets: needs, donations, volunteers, hours, service deliveries
and programmes from XLSX or CSV, validated row by row against the same schemas as the API's bodies.

Pure (no I/O): a file in, rows with their payload or their errors out, and the templates.
A row's columns are the payload's fields flattened (``donor_name``, ``contact_phone``;
lists comma-separated); headers may be the keys, the zh-CN or the en labels of the template.
The gateway then submits the good rows as the same events as one POST each (see
``coordination_routes``)."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from marshmallow import Schema, ValidationError

from services.common import contract, sheets
from services.common.reference import Reference
from services.intake.checks import check_references

MAX_ROWS = 2000  # rows of data per file
MAX_COLUMNS = 40
MAX_UNPACKED_BYTES = 16 * 1024 * 1024  # an XLSX is a zip: what it may unpack to
MAX_CELL_CHARS = 2000
LOCAL = timezone(timedelta(hours=8), "Asia/Shanghai")  # times typed without a zone

# column: (key, zh-CN header, en header, type); type text, count, number, bool, list, day
KINDS: dict[str, dict[str, Any]] = {
    "needs": {"id": "need_id", "event": "need_posted", "columns": (
        ("need_id", "需求编号", "need id", "text"),
        ("community_id", "社区编号", "community id", "text"),
        ("kind", "类型（goods/service）", "kind (goods/service)", "text"),
        ("category", "类别", "category", "text"),
        ("quantity", "数量", "quantity", "number"), ("unit", "单位", "unit", "text"),
        ("urgency", "紧急程度（critical/high/normal/low）",
         "urgency (critical/high/normal/low)", "text"),
        ("needed_by", "需要日期", "needed by", "moment"),
        ("beneficiaries", "受益人数", "beneficiaries", "count"),
        ("programme", "服务计划", "programme", "text"),
        ("contact_name", "联系人", "contact name", "text"),
        ("contact_phone", "联系电话", "contact phone", "text"),
        ("note", "备注", "note", "text"))},
    "donations": {"id": "donation_id", "event": "donation_received", "columns": (
        ("donation_id", "捐赠编号", "donation id", "text"),
        ("acquisition", "来源（donated/purchased）", "acquisition (donated/purchased)",
         "text"),
        ("donor_name", "捐赠方/供应方", "donor or seller", "text"),
        ("donor_kind", "捐赠方类型", "donor kind", "text"),
        ("location_id", "入库地点编号", "warehouse id", "text"),
        ("category", "类别", "category", "text"),
        ("quantity", "数量", "quantity", "number"), ("unit", "单位", "unit", "text"),
        ("value_yuan", "价值（元，未知可留空）", "value in yuan (blank if unknown)", "number"),
        ("value_method", "估值方式", "valuation", "text"),
        ("face_value_yuan", "每单位保额/面值（元）", "cover or face value each (yuan)",
         "number"),
        ("box_size", "每箱数量", "box size", "number"),
        ("box_unit", "每箱单位", "box unit", "text"),
        ("expires_at", "过期日期", "expires on", "moment"),
        ("programme", "服务计划", "programme", "text"),
        ("pledge_id", "认捐编号", "pledge id", "text"))},
    "volunteers": {"id": "volunteer_id", "event": "volunteer_registered", "columns": (
        ("volunteer_id", "志愿者编号", "volunteer id", "text"),
        ("home_community_id", "所在社区编号", "home community id", "text"),
        ("skills", "技能（逗号分隔）", "skills (comma-separated)", "list"),
        ("organisation_id", "所属机构编号", "organisation id", "text"),
        ("weekly_hours_cap", "每周时长上限", "weekly hours cap", "number"),
        ("contact_name", "姓名", "name", "text"),
        ("contact_phone", "电话", "phone", "text"))},
    "hours": {"id": "hours_id", "event": "hours_logged", "columns": (
        ("hours_id", "时长记录编号", "hours id", "text"),
        ("volunteer_id", "志愿者编号", "volunteer id", "text"),
        ("hours", "时长（小时）", "hours", "number"), ("date", "日期", "date", "day"),
        ("activity", "服务类别", "activity", "text"),
        ("programme", "服务计划", "programme", "text"))},
    "deliveries": {"id": "delivery_id", "event": "service_delivered", "columns": (
        ("delivery_id", "服务记录编号", "delivery id", "text"),
        ("programme", "服务计划", "programme", "text"),
        ("category", "服务类别", "service", "text"), ("date", "日期", "date", "day"),
        ("sessions", "服务次数", "sessions", "count"),
        ("people_served", "服务人次", "people served", "count"),
        ("providers", "服务人员数", "providers", "count"),
        ("organisation_id", "机构编号", "organisation id", "text"),
        ("approximate", "约数（是/否）", "approximate (yes/no)", "bool"))},
    "programmes": {"id": "programme_id", "event": "programme_recorded", "columns": (
        ("programme_id", "项目编号", "programme id", "text"),
        ("name", "项目名称", "name", "text"), ("name_en", "英文名称", "name (English)", "text"),
        ("plan", "所属计划", "plan", "text"),
        ("recorded_at", "统计时间", "recorded at", "moment"),
        ("organisation_ids", "参与机构编号（逗号分隔）", "organisation ids (comma-separated)",
         "list"),
        ("activities", "开展活动（期/次）", "activities", "count"),
        ("communities", "参与社区数", "communities", "count"),
        ("groups", "社区自组织数", "groups", "count"),
        ("participants", "参与人数", "participants", "count"),
        ("reach", "覆盖人次", "reach (person-times)", "count"),
        ("approximate", "约数（是/否）", "approximate (yes/no)", "bool"),
        ("note", "备注", "note", "text"))},
}
NESTED = {"donor_name": ("donor", "name"), "donor_kind": ("donor", "kind"),
          "contact_name": ("contact", "name"), "contact_phone": ("contact", "phone")}
TRUE, FALSE = {"true", "yes", "y", "1", "是", "对"}, {"false", "no", "n", "0", "否", ""}


class FileRefused(ValueError):
    """The file as a whole cannot be read (not CSV or XLSX, too large, unknown headers)."""


@dataclass
class Row:
    number: int  # the spreadsheet's row number (the header is row 1)
    payload: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def read_table(content: bytes, content_type: str) -> list[list[Any]]:
    """The file's cells, header first: XLSX (its first sheet) or CSV (UTF-8, with or
    without a byte-order mark, or GB18030 as Excel saves it in Chinese Windows)."""
    is_zip = content[:4] == b"PK\x03\x04"
    if is_zip or "spreadsheetml" in content_type:
        if not is_zip:
            raise FileRefused("the body is not an XLSX workbook")
        return _read_xlsx(content)
    return _read_csv(content)


# a workbook's sheets by kind: the key, or what a coordinator would call the sheet
SHEET_NAMES = {"needs": ("需求",), "donations": ("物资", "捐赠", "goods"),
               "volunteers": ("志愿者",), "hours": ("服务时长", "时长"),
               "deliveries": ("服务成效", "服务"), "programmes": ("项目", "服务计划")}
NOTES_SHEETS = ("说明", "notes")
# the order a workbook's sheets are imported in: volunteers before their hours
IMPORT_ORDER = ("volunteers", "needs", "donations", "hours", "deliveries", "programmes")


def read_workbook(content: bytes) -> dict[str, list[list[Any]]]:
    """Every sheet of an XLSX workbook by the kind it holds (its title: ``donations`` or
    ``物资``, ``volunteers`` or ``志愿者``...); a template's notes sheet is skipped, any other
    sheet refuses the file."""
    if content[:4] != b"PK\x03\x04":
        raise FileRefused("the body is not an XLSX workbook")
    names = {}
    for kind in KINDS:
        for name in (kind, *SHEET_NAMES[kind]):
            names[name.lower()] = kind
    tables: dict[str, list[list[Any]]] = {}
    rows = 0
    for title, table in _read_xlsx(content, every_sheet=True):
        if title.strip().lower() in NOTES_SHEETS:
            continue
        kind = names.get(title.strip().lower())
        if kind is None:
            raise FileRefused(f"sheet {title[:60]!r} is none of: "
                              f"{', '.join(f'{k} ({SHEET_NAMES[k][0]})' for k in KINDS)}")
        if kind in tables:
            raise FileRefused(f"two sheets of {kind}")
        rows += len(table)
        if rows > MAX_ROWS + len(KINDS):
            raise FileRefused(f"more than {MAX_ROWS:,} rows")
        tables[kind] = table
    if not tables:
        raise FileRefused("the workbook has no sheet to import")
    return tables


def _read_xlsx(content: bytes, every_sheet: bool = False) -> Any:
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            if sum(i.file_size for i in archive.infolist()) > MAX_UNPACKED_BYTES:
                raise FileRefused("the workbook unpacks to more than "
                                  f"{MAX_UNPACKED_BYTES // (1024 * 1024)} MiB")
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except FileRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable workbook is the caller's file
        raise FileRefused(f"the workbook cannot be read ({type(exc).__name__})") from None
    try:
        if len(book.worksheets) > len(KINDS) + 1:
            raise FileRefused(f"more than {len(KINDS) + 1} sheets")
        tables = []
        for sheet in book.worksheets if every_sheet else book.worksheets[:1]:
            rows: list[list[Any]] = []
            for values in sheet.iter_rows(max_col=MAX_COLUMNS + 1, values_only=True):
                if len(rows) > MAX_ROWS + 1:
                    raise FileRefused(f"more than {MAX_ROWS:,} rows")
                cells = list(values)
                while cells and cells[-1] is None:  # read-only sheets pad rows to max_col
                    cells.pop()
                rows.append(cells)
            tables.append((sheet.title, rows))
        return tables if every_sheet else tables[0][1]
    finally:
        book.close()


def _read_csv(content: bytes) -> list[list[Any]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise FileRefused("the CSV is neither UTF-8 nor GB18030 text")
    if "\x00" in text:
        raise FileRefused("the body is not CSV text")
    rows = []
    try:
        for values in csv.reader(io.StringIO(text)):
            if len(rows) > MAX_ROWS + 1:
                raise FileRefused(f"more than {MAX_ROWS:,} rows")
            rows.append(values)
    except csv.Error as exc:
        raise FileRefused(f"the CSV cannot be read: {exc}") from None
    return rows


def _headers(kind: str, header: list[Any]) -> list[str | None]:
    """Map the header row onto column keys; an unknown header refuses the file."""
    names: dict[str, str] = {}
    for key, zh, en, _ in KINDS[kind]["columns"]:
        for name in (key, zh, en):
            names[name.strip().lower()] = key
    keys: list[str | None] = []
    unknown = []
    for cell in header[:MAX_COLUMNS + 1]:
        text = "" if cell is None else str(cell).strip().lower()
        if not text:
            keys.append(None)
            continue
        if text not in names:
            unknown.append(str(cell)[:60])
        keys.append(names.get(text))
    if unknown:
        raise FileRefused(f"unknown columns: {', '.join(unknown)} (see the template)")
    if len(header) > MAX_COLUMNS:
        raise FileRefused(f"more than {MAX_COLUMNS} columns")
    wanted = [k for k in keys if k]
    if len(set(wanted)) != len(wanted):
        raise FileRefused("a column appears twice")
    return keys


def _as_count(raw: Any) -> int:
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        return int(raw.replace(",", ""))
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError("not a whole number")
    return raw


def _as_number(raw: Any) -> float:
    if isinstance(raw, str):
        return float(raw.replace(",", ""))
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError("not a number")
    return float(raw)


def _as_bool(raw: Any) -> bool:
    text = str(raw).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError("not yes or no")


def _as_list(raw: Any) -> list[str]:
    return [part.strip() for part in str(raw).replace("，", ",").split(",") if part.strip()]


def _as_text(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))  # an id typed as a number
    return str(raw)


def _unslashed(raw: Any) -> Any:
    """2020/2/15, as Excel in Chinese shows a date typed as text, as 2020-02-15 (the rest of
    the text kept)."""
    if not (isinstance(raw, str) and "/" in raw[:10]):
        return raw
    try:
        day = datetime.strptime(raw[:10].strip(), "%Y/%m/%d").date()
    except ValueError:
        raise ValueError("not a date (2020-02-15)") from None
    return day.isoformat() + raw[10:]


def _as_day(raw: Any) -> str:
    if isinstance(raw, datetime):
        return raw.date().isoformat()
    if isinstance(raw, date):
        return raw.isoformat()
    return _as_text(_unslashed(raw))


def _as_moment(raw: Any) -> str:
    # a day in the sheet is the end of that day where the coalition works
    raw = _unslashed(raw)
    if isinstance(raw, datetime):
        return (raw if raw.tzinfo else raw.replace(tzinfo=LOCAL)).isoformat()
    if isinstance(raw, date):
        return f"{raw.isoformat()}T23:59:59+08:00"
    text = str(raw)
    return f"{text}T23:59:59+08:00" if len(text) == 10 else text


# how a cell of each column type is read (text and anything else: :func:`_as_text`)
READERS = {"count": _as_count, "number": _as_number, "bool": _as_bool, "list": _as_list,
           "day": _as_day, "moment": _as_moment}


def _value(raw: Any, type_: str) -> Any:
    """A cell as the schema takes it; ValueError when it cannot be."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        raw = raw.strip()
        if len(raw) > MAX_CELL_CHARS:
            raise ValueError(f"longer than {MAX_CELL_CHARS} characters")
    return READERS.get(type_, _as_text)(raw)


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _cells(row: Row, keys: list[str | None], cells: list[Any],
           types: dict[str, str]) -> dict[str, Any]:
    """A row's readable, non-empty cells by column key; the others go to ``row.errors``."""
    flat: dict[str, Any] = {}
    for key, raw in zip(keys, cells, strict=False):
        if key is None:
            continue
        try:
            value = _value(raw, types[key])
        except (ValueError, OverflowError) as exc:
            row.errors[key] = str(exc) if str(exc) else "not readable"
            continue
        if value is not None:
            flat[key] = value
    return flat


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """Flattened columns back into the payload's shape: ``donor_name`` -> ``donor.name``."""
    payload: dict[str, Any] = {}
    for key, value in flat.items():
        if key in NESTED:
            outer, inner = NESTED[key]
            payload.setdefault(outer, {})[inner] = value
        else:
            payload[key] = value
    return payload


def _load(row: Row, schema: Schema, payload: dict[str, Any]) -> None:
    try:
        row.payload = schema.load(payload)
    except ValidationError as exc:
        # beside the cells that could not be read, what the schema says of the rest
        found = _columns(contract.flatten_errors(exc.messages))
        row.errors.update({k: v for k, v in found.items() if k not in row.errors})


def _check_references(row: Row, kind: str, ref: Reference) -> None:
    """The communities, areas and categories a good row names must be known."""
    event = KINDS[kind]["event"]
    if event in contract.INTAKE_TYPES:
        try:
            check_references(contract.Event("-", event, 1, contract.now(), "import",
                                            row.payload), ref)
        except contract.ContractError as exc:
            row.errors.update(_columns({k.removeprefix("data."): v
                                        for k, v in exc.fields.items()}))
    if not row.errors and kind == "deliveries" and row.payload.get("category") and \
            row.payload["category"] not in ref.catalogue:
        row.errors["category"] = f"unknown category {row.payload['category']!r}"


def rows_of(kind: str, table: list[list[Any]], schema: Schema,
            ref: Reference) -> list[Row]:
    """Each data row with its payload (loaded by ``schema``, the API body's) or its errors:
    a cell that is not its type, a field the schema refuses, an unknown community or
    category, an id already used by an earlier row of the file."""
    if not table:
        raise FileRefused("the file is empty")
    keys = _headers(kind, table[0])
    types = {c[0]: c[3] for c in KINDS[kind]["columns"]}
    id_key = KINDS[kind]["id"]
    if len(table) - 1 > MAX_ROWS:
        raise FileRefused(f"more than {MAX_ROWS:,} rows")
    out: list[Row] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(table[1:], start=2):
        if _blank(cells):
            continue  # blank lines between blocks are common in hand-made sheets
        row = Row(number)
        flat = _cells(row, keys, cells, types)
        _load(row, schema, _nested(flat))
        if not row.errors:
            _check_references(row, kind, ref)
        ident = str(flat.get(id_key, ""))
        if ident and ident in seen:
            row.errors[id_key] = f"the same id as row {seen[ident]}"
        elif ident:
            seen[ident] = number
        out.append(row)
    return out


def _columns(errors: dict[str, str]) -> dict[str, str]:
    """Schema paths back to column keys: ``donor.name`` -> ``donor_name``."""
    back = {f"{outer}.{inner}": key for key, (outer, inner) in NESTED.items()}
    return {back.get(k, k.split(".")[0] if k.startswith(("donor.", "contact.")) else k): v
            for k, v in errors.items()}


def template(kind: str, lang: str, fmt: str) -> bytes:
    """The file to fill in: the header row in ``lang`` (and, in XLSX, a sheet saying what
    each column takes)."""
    columns = [(c[0], c[1], c[2], {"count": "count", "number": "quantity"}.get(c[3], "text"))
               for c in KINDS[kind]["columns"]]
    if fmt == "csv":
        return sheets.to_csv(columns, [], lang).encode("utf-8")
    book = sheets.workbook()
    sheets.add_sheet(book, kind, columns, [], lang)
    zh = lang == "zh-CN"
    notes = [{"column": c[1] if zh else c[2], "key": c[0], "takes": _takes(c[3], zh)}
             for c in KINDS[kind]["columns"]]
    sheets.add_sheet(book, "说明" if zh else "notes",
                     (("column", "列", "column", "text"), ("key", "字段", "key", "text"),
                      ("takes", "填写", "takes", "text")), notes, lang)
    return sheets.save(book)


def _takes(type_: str, zh: bool) -> str:
    words = {"text": ("文字", "text"), "count": ("整数", "a whole number"),
             "number": ("数字", "a number"), "bool": ("是/否", "yes/no"),
             "list": ("逗号分隔的多项", "items separated by commas"),
             "day": ("日期，如 2020-02-15", "a date, e.g. 2020-02-15"),
             "moment": ("日期或时间，如 2020-02-15", "a date or time, e.g. 2020-02-15")}
    return words[type_][0 if zh else 1]
