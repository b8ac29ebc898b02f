import json
import logging

from services.common.logs import JsonFormatter, mask_name, mask_phone


def test_json_lines_carry_ids_and_mask_phones():
    record = logging.LogRecord("x", logging.INFO, __file__, 1,
                               "calling poster at %s", ("13812345678",), None)
    record.event_id = "e-1"
    record.need_id = "N1"
    line = json.loads(JsonFormatter().format(record))
    assert line["event_id"] == "e-1" and line["need_id"] == "N1"
    assert "13812345678" not in line["msg"]
    assert "138****5678" in line["msg"]


def test_masks():
    assert mask_phone("+86 138-1234-5678") == "861****5678"
    assert mask_name("张三丰") == "张**"
