"""A realistic Pend store of any size, deterministic per seed (`migration-pipeline generate --store pend`).

Users with profiles and investments (amounts as 36-digit strings or JSON numbers), admin assets and logs,
`days` explorer days of several chains each with wei values beyond 2^64, and a KYC folder for about half of
the users with JPEG, PNG and PDF documents whose headers are real (magic bytes, JFIF/IHDR/PDF structure).
Quirks at a small rate (about 1%): a non-numeric amount, an investment in a missing asset, a duplicate event,
a fractional wei value, an event whose chain differs from its file, a document whose extension lies, an
empty document, a KYC folder without application.json, a day file cut short.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

CHAINS = ("ethereum", "polygon", "base", "arbitrum")
QUIRK_RATE = 0.01
FIRST_DAY = date(2024, 3, 1)


def jpeg(rng: random.Random, size: int) -> bytes:
    """A JPEG-looking file: SOI, a JFIF APP0 segment, a quantization-table marker, scan bytes, EOI."""
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00\xff\xdb\x00\x43\x00"
    body = rng.randbytes(max(0, size - len(head) - 2))
    return head + body + b"\xff\xd9"


def png(rng: random.Random, size: int) -> bytes:
    """A PNG-looking file: signature, an IHDR chunk with its CRC, an IDAT chunk of random bytes, IEND."""
    ihdr = struct.pack(">IIBBBBB", 640, 480, 8, 2, 0, 0, 0)
    chunks = [(b"IHDR", ihdr), (b"IDAT", rng.randbytes(max(0, size - 57))), (b"IEND", b"")]
    out = b"\x89PNG\r\n\x1a\n"
    for kind, data in chunks:
        out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return out


def pdf(rng: random.Random, size: int) -> bytes:
    """A PDF-looking file: header with binary marker, one stream object of random bytes, trailer, %%EOF."""
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length %d >>\nstream\n"
    tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    body = rng.randbytes(max(0, size - len(head) - len(tail) - 8))
    return head.replace(b"%d", str(len(body)).encode()) + body + tail


@dataclass(frozen=True)
class Made:
    store_dir: Path
    users: int
    days: int
    events: int
    documents: int
    document_bytes: int

    def describe(self) -> str:
        return (f"wrote {self.users} users, {self.events} events over {self.days} days and {self.documents} KYC"
                f" documents ({self.document_bytes / 2**20:.1f} MiB) under {self.store_dir}")


def _address(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def generate_pend_store(out: Path, users: int, days: int, seed: int = 0, document_kib: int = 96) -> Made:
    """Write `<out>/pend`; documents average `document_kib` KiB."""
    rng = random.Random(seed)
    store = out / "pend"
    store.mkdir(parents=True, exist_ok=True)
    assets = [f"asset-{i}" for i in range(max(3, users // 500))]
    (store / "admin-assets.json").write_text(json.dumps([
        {"id": a, "name": f"Fund {i}", "symbol": f"F{i}", "assetType": rng.choice(["fund", "bond", "realestate"]),
         "description": "Tokenized asset", "targetRaise": str(rng.randrange(10**5, 10**9)),
         "minInvestment": rng.choice([100, 250, 1000]), "apy": rng.choice(["4.5", "7.25", "11.0"]),
         "status": "active", "tokenAddress": _address(rng), "createdAt": _iso(datetime(2024, 1, 1, tzinfo=UTC)),
         "updatedAt": _iso(datetime(2024, 1, 2, tzinfo=UTC))} for i, a in enumerate(assets)]))
    addresses: list[str] = []
    documents = document_bytes = 0
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with open(store / "wallet-db.json", "w", encoding="utf-8") as db:
        db.write('{"users": {')
        for n in range(users):
            address = _address(rng)
            if rng.random() < 0.5:
                address = address.upper().replace("0X", "0x")  # some apps stored the checksum-like upper case
            addresses.append(address)
            invs = []
            for k in range(rng.randrange(0, 4)):
                amount: object = str(rng.randrange(10**35, 10**36)) if rng.random() < 0.3 else \
                    f"{rng.randrange(1, 10**7)}.{rng.randrange(0, 10**18):018d}"
                if rng.random() < 0.2:
                    amount = rng.randrange(1, 10**6)  # a JSON number
                if rng.random() < QUIRK_RATE:
                    amount = "n/a"
                asset = rng.choice(assets) if rng.random() >= QUIRK_RATE else "asset-missing"
                invs.append({"id": f"inv-{n}-{k}", "assetId": asset, "amount": amount,
                             "txHash": "0x" + rng.randbytes(32).hex(), "status": rng.choice(["confirmed", "pending"]),
                             "timestamp": _iso(start + timedelta(minutes=rng.randrange(10**5)))})
            record = {"address": address, "email": f"user{n}@example.com", "name": f"User {n}",
                      "role": "investor", "createdAt": _iso(start + timedelta(minutes=n)),
                      "lastLogin": _iso(start + timedelta(days=60, minutes=n)),
                      "kycStatus": rng.choice(["none", "pending", "approved", "rejected"]),
                      "profile": {"displayName": f"user{n}", "avatarUrl": f"https://cdn.example/{n}.png",
                                  "country": rng.choice(["GB", "DE", "SG", "US"]),
                                  "riskProfile": rng.choice(["low", "balanced", "high"])},
                      "investments": invs}
            db.write(("," if n else "") + json.dumps(address) + ":" + json.dumps(record))
            if rng.random() < 0.5:
                made = _kyc_folder(store, rng, address, n, document_kib)
                documents += made[0]
                document_bytes += made[1]
        db.write("}}")
    (store / "admin-logs.json").write_text(json.dumps([
        {"id": f"log-{i}", "adminAddress": _address(rng), "action": rng.choice(["approve_kyc", "reject_kyc", "edit"]),
         "targetType": "user", "targetId": rng.choice(addresses) if addresses else "none",
         "details": {"reason": "routine", "score": "0.97"}, "ip": f"198.51.100.{i % 250}",
         "timestamp": _iso(start + timedelta(hours=i))} for i in range(max(1, users // 10))]))
    events = 0
    for d in range(days):
        day = FIRST_DAY + timedelta(days=d)
        folder = store / "explorer-data" / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        for chain in CHAINS[: 2 + d % 3]:
            batch = []
            for i in range(max(1, users // 20)):
                value: object = str(rng.randrange(0, 2**100))
                inner_chain = chain
                if rng.random() < QUIRK_RATE:
                    value = "1.5"
                if rng.random() < QUIRK_RATE:
                    inner_chain = "solana"
                batch.append({"txHash": "0x" + rng.randbytes(32).hex(), "logIndex": i % 7,
                              "blockNumber": 19_000_000 + d * 7200 + i,
                              "blockTimestamp": int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
                              + i, "chain": inner_chain, "contractAddress": _address(rng), "eventName": "Transfer",
                              "from": rng.choice(addresses) if addresses else _address(rng), "to": _address(rng),
                              "value": value, "assetId": rng.choice(assets), "args": {"memo": f"e{i}"}})
                if rng.random() < QUIRK_RATE:
                    batch.append(dict(batch[-1]))  # the same event twice
            events += len(batch)
            text = json.dumps(batch)
            if rng.random() < QUIRK_RATE:
                text = text[: len(text) // 2]  # a day file cut short
            (folder / f"{chain}.json").write_text(text)
    return Made(store, users, days, events, documents, document_bytes)


def _kyc_folder(store: Path, rng: random.Random, address: str, n: int, document_kib: int) -> tuple[int, int]:
    folder = store / "uploads" / "kyc" / address
    folder.mkdir(parents=True, exist_ok=True)
    if rng.random() >= QUIRK_RATE:
        (folder / "application.json").write_text(json.dumps({
            "address": address, "fullName": f"Person {n}",
            "dateOfBirth": f"19{rng.randrange(50, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}",
            "country": rng.choice(["GB", "DE", "SG", "US"]), "documentType": rng.choice(["passport", "id_card"]),
            "documentNumber": f"D{rng.randrange(10**7, 10**8)}", "status": rng.choice(["pending", "approved"]),
            "submittedAt": "2024-02-01T00:00:00Z", "reviewedAt": None, "reviewedBy": None, "rejectionReason": None}))
    sizes = 0
    files = [("id-front.jpg", jpeg), ("selfie.png", png), ("proof-of-address.pdf", pdf)]
    for name, make in files:
        size = max(64, int(rng.gauss(document_kib, document_kib / 4)) * 1024)
        content = make(rng, size)
        if rng.random() < QUIRK_RATE:
            content = png(rng, size) if make is not png else jpeg(rng, size)  # the extension lies
        if rng.random() < QUIRK_RATE:
            content = b""
        (folder / name).write_bytes(content)
        sizes += len(content)
    return len(files), sizes
