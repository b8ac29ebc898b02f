"""Operators' commands over the ledger: the bulletin, reconciliation, exports.

    python -m services.accounting.cli bulletin [--lang en] [--from 2020-01-24] [--to ...]
    python -m services.accounting.cli reconcile        # exit 1 when there is a difference
    python -m services.accounting.cli export --format xlsx --by street -o figures.xlsx

They ask the running services over RPC (``--config``, default ``deploy/config.yaml`` with
``${ENV:default}`` substitution), as the gateway does."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from services.common.config import load_config

GROUPINGS = ("category", "donor", "street", "community", "programme", "date")


def _rpc(config: dict[str, Any]) -> Any:
    from nameko.standalone.rpc import ClusterRpcProxy

    return ClusterRpcProxy({"AMQP_URI": config["AMQP_URI"], "serializer": "json"}, timeout=60)


def cmd_bulletin(args: argparse.Namespace, rpc: Any) -> int:
    bulletin = rpc.accounting.bulletin(args.lang, args.start, args.end)
    if args.json:
        print(json.dumps(bulletin, ensure_ascii=False, indent=2))
    else:
        print(bulletin["text"], end="")
    return 0


def cmd_reconcile(args: argparse.Namespace, rpc: Any) -> int:
    result = rpc.accounting.reconcile(rpc.donations.stock_summary())
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for row in result["differences"]:
            print(f"DIFFERENCE {row['category']} @ {row['location_id']}: received "
                  f"{row['received']} {row['unit']} != allocated {row['allocated']} + in stock "
                  f"{row['in_stock']} + written off {row['written_off']} (difference "
                  f"{row['difference']}, stock received differs by "
                  f"{row['received_difference']}; in yuan by "
                  f"{row.get('value_difference_yuan', 0)}, its lots' shares by "
                  f"{row.get('lots_value_difference_yuan', 0)})")
        lots = result.get("lot_differences", [])
        for lot in lots:
            print(f"LOT {lot['lot_id']} ({lot['category']} @ {lot['location_id']}): received "
                  f"{lot['received_yuan']} yuan != allocated {lot['allocated_yuan']} + written "
                  f"off {lot['written_off_yuan']} + transferred out "
                  f"{lot['transferred_out_yuan']} + in stock {lot['in_stock_yuan']} "
                  f"(difference {lot['value_difference_yuan']})")
        print("balanced" if result["balanced"] else
              f"{len(result['differences'])} difference(s), {len(lots)} lot(s) off in yuan")
    return 0 if result["balanced"] else 1


def cmd_export(args: argparse.Namespace, rpc: Any) -> int:
    out = rpc.accounting.export(args.format, args.by, args.start, args.end, args.lang)
    data = out["text"].encode("utf-8") if "text" in out else base64.b64decode(out["base64"])
    if args.output == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(args.output, "wb") as fh:
            fh.write(data)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="deploy/config.yaml")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("bulletin", "reconcile", "export"):
        p = sub.add_parser(name)
        p.add_argument("--from", dest="start")
        p.add_argument("--to", dest="end")
        p.add_argument("--json", action="store_true")
        if name == "bulletin":
            p.add_argument("--lang", default="zh-CN", choices=("zh-CN", "en"))
        if name == "export":
            p.add_argument("--format", default="csv", choices=("csv", "xlsx"))
            p.add_argument("--by", default="category", choices=GROUPINGS)
            p.add_argument("--lang", choices=("zh-CN", "en"), help="headers in this language")
            p.add_argument("-o", "--output", default="-")
    args = parser.parse_args(argv)
    commands = {"bulletin": cmd_bulletin, "reconcile": cmd_reconcile, "export": cmd_export}
    with _rpc(load_config(args.config)) as rpc:
        return commands[args.command](args, rpc)


if __name__ == "__main__":
    sys.exit(main())
