"""The run command's program: the whole workflow on the local broker, and a scripted scenario.

    python -m deploy.demo            # start everything, play the scenario, stop
    python -m deploy.demo --serve    # start everything and keep it running (Ctrl-C stops)

The scenario speaks only the public contract: it publishes ContractLinked as the CRM does, asks
for codes and logs in through recovery's HTTP API as the portal does, and reads what the local
SMS gateway and SMTP sink receive. Everything it prints about people is masked; passwords are
shown only by their first two characters.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.local_stack import LocalStack, Mail
from schemas.events import ContractLinked
from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_REJECTED,
    CONTRACT_LINKED,
    CONTRACT_REJECTED,
    NOTIFICATION_STATUS,
)
from services.common.codec import encode
from services.common.kafka_config import aiokafka_kwargs
from services.common.masking import mask_email, mask_phone
from services.ops.kafka_read import partitions
from services.ops.present import describe_value, mask_login

T0 = time.monotonic()
PASSWORD_RE = re.compile(r":\s*([A-Za-z0-9]{8,})")


def say(who: str, text: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {who:<10} {text}", flush=True)


def hide(password: str) -> str:
    return password[:2] + "*" * (len(password) - 2)


SUBSCRIBERS: list[dict[str, Any]] = [
    {"who": "Ivanov (interactive TV, email linked)", "contract_number": "77-1000001",
     "personal_account": "100000000001", "tv_product": "interactive", "mobile_active": True,
     "subscriber": {"full_name": "Иванов Иван Иванович", "mobile": "+7 916 123-45-67",
                    "email": "ivanov@example.ru", "passport": {"series": "4510", "number": "123456"}}},
    {"who": "Petrova (linear TV, no email)", "contract_number": "77-1000002",
     "personal_account": "500012345678", "tv_product": "linear", "mobile_active": True,
     "subscriber": {"full_name": "Петрова Анна Сергеевна", "mobile": "8 (903) 555-12-34",
                    "passport": {"series": "4511", "number": "654321"}}},
    {"who": "Sidorov (satellite TV, mobile out of service)", "contract_number": "77-1000003",
     "personal_account": "700098765432", "tv_product": "satellite", "mobile_active": False,
     "subscriber": {"full_name": "Сидоров Пётр Петрович", "mobile": "+7-925-000-11-22",
                    "email": "sidorov@example.ru", "passport": {"series": "4512", "number": "111222"}}},
]


class Scenario:
    def __init__(self, stack: LocalStack, http: aiohttp.ClientSession) -> None:
        self.stack = stack
        self.http = http
        self.api = stack.url("recovery")

    async def link_contracts(self) -> None:
        producer = AIOKafkaProducer(**aiokafka_kwargs(self.stack.kafka("crm")), acks="all",
                                    enable_idempotence=True)
        await producer.start()
        try:
            for sub in SUBSCRIBERS:
                fields = {k: v for k, v in sub.items() if k != "who"}
                event = ContractLinked.model_validate({**fields, "operator_id": "crm-op-17"}, strict=False)
                record = encode(event, key=event.contract_number, source="/crm/demo")
                await producer.send_and_wait(self.stack.topic_prefix + CONTRACT_LINKED, record.value,
                                             key=record.key, headers=record.headers)
                say("CRM", f"ContractLinked {event.contract_number}: {sub['who']}")
        finally:
            await producer.stop()

    async def request_code(self, login: str, channel: str, locale: str = "ru") -> tuple[int, bytes]:
        async with self.http.post(f"{self.api}/api/v1/code-requests",
                                  json={"login": login, "channel": channel, "locale": locale}) as r:
            body = await r.read()
        say("portal", f"Get code for {mask_login(login)} by {channel} -> HTTP {r.status} {body.decode()}")
        return r.status, body

    async def log_in(self, login: str, password: str) -> tuple[int, bytes]:
        async with self.http.post(f"{self.api}/api/v1/login",
                                  json={"login": login, "password": password}) as r:
            body = await r.read()
        say("portal", f"log in {mask_login(login)} with {hide(password)} -> HTTP {r.status} {body.decode()}")
        return r.status, body

    async def wait_sms(self, e164: str, seen: int, timeout_s: float = 60) -> str:
        gateway = self.stack.sms_gateway
        assert gateway is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # the gateway runs on its own loop in a thread: ask it without blocking this loop
            texts = await asyncio.to_thread(
                gateway.call, lambda s: [m.text for m in s.accepted.values() if m.to == e164]
            )
            if len(texts) > seen:
                return str(texts[-1])
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no SMS for {mask_phone(e164)} in {timeout_s}s")

    async def wait_mail(self, address: str, seen: int, timeout_s: float = 60) -> Mail:
        smtp = self.stack.smtp
        assert smtp is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            mails = [m for m in smtp.messages if address in m.to]
            if len(mails) > seen:
                return mails[-1]
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no email for {mask_email(address)} in {timeout_s}s")

    async def play(self) -> bool:
        ok = True
        say("demo", "1. the CRM links three contracts")
        await self.link_contracts()
        await asyncio.sleep(3)  # registration -> AccountChanged -> recovery's projection

        say("demo", "2. Ivanov: 'Forgot password? -> Get code' by email, logs in with it")
        await self.request_code("8 (916) 123-45-67", "email")
        mail = await self.wait_mail("ivanov@example.ru", 0)
        first = password_in(mail.body)
        say("SMTP sink", f"to {mask_email(mail.to[0])}: '{mail.subject}' (password {hide(first)})")
        ok &= (await self.log_in("+7 916 123 45 67", first))[0] == 200

        say("demo", "3. Ivanov asks again, by SMS; the new password replaces the old one at first use")
        await asyncio.sleep(self.stack_cooldown())
        await self.request_code("+7 (916) 123-45-67", "sms", "en")
        text = await self.wait_sms("+79161234567", 0)
        second = password_in(text)
        say("SMS gw", f"to {mask_phone('+79161234567')}: {text.replace(second, hide(second))}")
        ok &= (await self.log_in("89161234567", second))[0] == 200
        ok &= (await self.log_in("89161234567", first))[0] == 401
        say("demo", "   the old password is refused now")

        say("demo", "4. Petrova (linear TV): the login is the personal account number")
        await self.request_code("5000 1234 5678", "sms")
        text = await self.wait_sms("+79035551234", 0)
        ok &= (await self.log_in("500012345678", password_in(text)))[0] == 200
        say("demo", "   and by email, which she has not linked -> 'call support'")
        await self.request_code("500012345678", "email")

        say("demo", "5. Sidorov (satellite): the mobile is out of service -> 'call support'")
        await self.request_code("7000 9876 5432", "sms")

        say("demo", "6. an unknown login gets exactly the same answer as a known one")
        _, known = await self.request_code("7000 9876 5432", "email")
        _, unknown = await self.request_code("+7 999 000-00-00", "sms")
        same = known == unknown
        say("demo", f"   identical HTTP bodies: {same}")
        ok &= same
        await asyncio.sleep(3)  # let the last outcomes print
        return ok

    def stack_cooldown(self) -> float:
        return float(self.stack.extra_env.get("LIMIT_LOGIN_COOLDOWN_S", "60")) + 0.5


def password_in(text: str) -> str:
    match = PASSWORD_RE.search(text)
    if match is None:
        raise ValueError("no password in the message")
    return match.group(1)


async def watch(stack: LocalStack, stop: asyncio.Event, started: asyncio.Event) -> None:
    """Print, as they happen, what the services publish for ops (masked on the wire already)."""
    names = {stack.topic_prefix + t: t for t in (ACCOUNT_CHANGED, CONTRACT_REJECTED, CODE_REJECTED,
                                                 NOTIFICATION_STATUS)}
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(stack.kafka("ops")), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in names for p in await partitions(consumer, t)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        started.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for m in messages:
                    view = describe_value(m.topic, m.value, stack.topic_prefix)
                    say("topic", f"{names[m.topic]}: {_summary(view)}")
    finally:
        await consumer.stop()


def _summary(view: dict[str, Any]) -> str:
    kind = view.get("type", "?")
    if kind == "AccountChanged":
        return (f"account {view['contract_number']} {view['status']} v{view['version']} "
                f"channels={view['channels']} mobile={view['contacts'].get('mobile_masked')}")
    if kind == "CodeRejected":
        extra = {k: view[k] for k in ("advice", "support_phone", "retry_after_s") if k in view}
        return f"CodeRejected {view['reason']} {extra}"
    if kind == "NotificationStatus":
        return f"NotificationStatus {view['status']} {view['channel']} to {view['destination_masked']}"
    return f"{kind} {view.get('reason', '')}"


async def main_async(args: argparse.Namespace) -> int:
    extra = {"LIMIT_LOGIN_COOLDOWN_S": "5"} if not args.serve else {}
    stack = LocalStack(bootstrap=args.bootstrap, extra_env=extra)
    say("demo", "starting registration, recovery, notifier (and local gateways unless configured) ...")
    await asyncio.to_thread(stack.start)
    for service in stack.processes:
        say("demo", f"{service.name} ready on {service.url} (log {service.log_path})")
    if stack.sms_gateway is not None:
        say("demo", f"local SMS gateway on {stack.sms_gateway.url}")
    if stack.smtp is not None:
        say("demo", f"local SMTP sink on 127.0.0.1:{stack.smtp.port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watching = asyncio.Event()
    watcher = asyncio.create_task(watch(stack, stop, watching))
    await asyncio.wait_for(watching.wait(), timeout=30)
    try:
        if args.serve:
            say("demo", "serving; Ctrl-C stops everything")
            await stop.wait()
            return 0
        async with aiohttp.ClientSession() as http:
            play = asyncio.create_task(Scenario(stack, http).play())
            done, _ = await asyncio.wait({play, asyncio.create_task(stop.wait())},
                                         return_when=asyncio.FIRST_COMPLETED)
            if play not in done:
                play.cancel()
                say("demo", "interrupted")
                return 130
            ok = play.result()
        say("demo", "scenario " + ("succeeded" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        stop.set()
        await watcher
        await asyncio.to_thread(stack.stop)
        say("demo", f"stopped everything at {datetime.now(UTC).isoformat(timespec='seconds')}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="skip the scenario; keep the services running")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
