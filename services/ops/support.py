"""``selfcare-ops keys reseal``, ``selfcare-ops login`` and ``selfcare-ops identify``: through the
services' authenticated ops routes (``ops_api``), never by reading a database or a topic."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from services.ops.ops_api import OpsApiError, call

keys_app = typer.Typer(no_args_is_help=True, help="Encryption keys: reseal after a rotation.")

WHY = {
    "no_email_linked": "no email linked",
    "mobile_out_of_service": "mobile out of service",
    "mobile_outside_sms_prefixes": "mobile outside SMS_ALLOWED_PREFIXES",
    "mobile_unreadable": "the mobile does not open with CONTACT_KEYS",
    "account_closed": "account closed",
}


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _fail(exc: OpsApiError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@keys_app.command("reseal")
def reseal_cmd() -> None:
    """Registration re-publishes every account sealed with the newest CONTACT_KEYS key."""
    try:
        _, report = call("registration", "/ops/v1/keys/reseal", {}, timeout_s=3600)
    except OpsApiError as exc:
        raise _fail(exc) from None
    typer.echo(f"accounts: {report['accounts']}, resealed and re-published: {report['resealed']}, "
               f"unreadable: {report['unreadable']}; newest key id {report['newest_key_id']}")
    if report["unreadable"]:
        raise typer.Exit(1)


def login_view(login: str) -> dict[str, Any]:
    """Recovery's view of the login, with each issued code's delivery from the notifier."""
    _, view = call("recovery", "/ops/v1/login", {"login": login})
    code_ids = [r["code_id"] for r in view.get("requests", []) if r.get("code_id")]
    found: dict[str, Any] = {}
    if code_ids:
        _, answer = call("notifier", "/ops/v1/deliveries", {"code_ids": code_ids})
        found = answer.get("deliveries", {})
    for request in view.get("requests", []):
        if request.get("code_id"):
            request["delivery"] = found.get(request["code_id"])
    return view


def render_login(login: str, view: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if not view["login_valid"]:
        lines.append(f"login {login!r}: neither a mobile number nor a personal account number")
    elif not view["found"]:
        lines.append(f"login {login!r}: no account uses it as its login (unknown_login)")
    else:
        a = view["account"]
        lines.append(f"login {login!r}: account {a['account_id']} ({a['tv_product']} TV, "
                     f"{a['status']}), logs in by {a['login_kind'].replace('_', ' ')}")
        lines.append(f"  mobile {a['mobile_masked']}   email {a['email_masked'] or '-'}")
        for name, channel in view["channels"].items():
            state = "usable" if channel["usable"] else \
                f"NOT usable: {WHY.get(channel['reason'], channel['reason'])}"
            lines.append(f"  {name:6} {state}")
        if not any(c["usable"] for c in view["channels"].values()):
            lines.append("  no channel works: the subscriber must call support")
    lock = view["lockout"]
    line = "lock-out: " + (f"LOCKED until {_when(lock['locked_until'])}" if lock["locked"]
                           else f"open ({lock['failures']} failed logins in a row)")
    if lock.get("addresses_locked"):
        n = lock["addresses_locked"]
        line += (f"; LOCKED from {n} client address{'es' if n > 1 else ''} until "
                 f"{_when(lock['addresses_locked_until'])}")
    lines.append(line)
    requests = view.get("requests", [])
    lines.append(f"last requests ({len(requests)}, newest first):" if requests
                 else "last requests: none")
    for r in requests:
        what = "issued  " if r["outcome"] == "issued" else f"rejected {r['reason']}"
        if r.get("retry_after_s"):
            what += f" (retry after {r['retry_after_s']} s)"
        line = f"  {_when(r['decided_at'])}  {r['channel']:5}  {what}"
        if r.get("requested_at") is not None:
            line += f"  (requested {_when(r['requested_at'])})"
        if r.get("code_id"):
            d = r.get("delivery")
            line += f"  code {r['code_id']}  delivery: " + (
                "not at the notifier yet" if d is None else
                f"{d['status']} to {d['destination_masked']} (received {_when(d['received_at'])}, "
                f"last change {_when(d['updated_at'])}, {d['attempts']} attempt(s)"
                + (f", last error {d['last_error']}" if d.get("last_error") else "") + ")")
        lines.append(line)
    return lines


def login_cmd(login: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Support's view of a login as the subscriber types it: account (masked), usable channels
    and why not, the last requests with outcome and delivery, the lock-out state."""
    try:
        view = login_view(login)
    except OpsApiError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(view, ensure_ascii=False, indent=2) if as_json
               else "\n".join(render_login(login, view)))


def identify_cmd(
    passport: Annotated[str, typer.Option(
        help='"<series> <number>" from the passport; omitted: asked for, not echoed',
        prompt="passport (series and number)", hide_input=True)],
    name: Annotated[str, typer.Option(help="the holder's full name; omitted: asked for",
                                      prompt="full name")],
    contract: Annotated[str | None, typer.Option(help="the contract number")] = None,
    mobile: Annotated[str | None, typer.Option(help="the mobile, instead of the contract")] = None,
    operator: Annotated[str | None, typer.Option(help="your operator id (or OPS_OPERATOR_ID)")] = None,
) -> None:
    """Confirm a subscriber's identity; only then print the personal account number and login."""
    operator = operator or os.environ.get("OPS_OPERATOR_ID")
    if not operator:
        typer.echo("error: --operator (or OPS_OPERATOR_ID) is required", err=True)
        raise typer.Exit(2)
    if (contract is None) == (mobile is None):
        typer.echo("error: give exactly one of --contract, --mobile", err=True)
        raise typer.Exit(2)
    body = {"operator": operator, "passport": passport, "full_name": name,
            **({"contract": contract} if contract else {"mobile": mobile})}
    try:
        status, answer = call("registration", "/ops/v1/identify", body)
    except OpsApiError as exc:
        raise _fail(exc) from None
    if status == 429:
        typer.echo(f"too many checks for this account: try again in {answer['retry_after_s']} s")
        raise typer.Exit(3)
    if answer["verdict"] != "confirmed":
        typer.echo("not confirmed")
        raise typer.Exit(1)
    typer.echo("confirmed")
    typer.echo(f"  product: {answer['tv_product']} TV; logs in by "
               f"{answer['login_kind'].replace('_', ' ')}")
    typer.echo(f"  personal account number: {answer['personal_account']}")
    typer.echo(f"  login to use: {answer['login']}")


def install(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command("login")(login_cmd)
    app.command("identify")(identify_cmd)
