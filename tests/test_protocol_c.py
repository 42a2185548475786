"""The reference C code of docs/protocol.md, compiled and run against the Python
implementation: the document's C blocks are the code under test, so they stay in step
with the wire. Skipped where no C compiler is installed."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cobs import cobs

from firmware_bridge.host import HostLink
from firmware_bridge.protocol import (
    CAP_RETRANSMIT,
    HB_NEED_CLASSES,
    Ack,
    Classes,
    Header,
    Heartbeat,
    Hello,
    HelloAck,
    MessageType,
    Result,
    ResultStatus,
    encode,
)
from firmware_bridge.stream import StreamDecoder
from tests.link_messages import chunk, frame, hello, meta

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

PRELUDE = r"""
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static uint16_t credits;
static uint32_t acked_next;
static void release_window_below(uint32_t n) { printf(" release %u", (unsigned)n); }
static void queue_resend_whole(uint32_t f) { printf(" whole %u", (unsigned)f); }
static void queue_resend(uint32_t f, uint16_t b) { printf(" piece %u.%u", (unsigned)f, b); }
"""

MAIN = r"""
static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    while (s[0] && s[1]) { unsigned v; sscanf(s, "%2x", &v); out[n++] = (uint8_t)v; s += 2; }
    return n;
}
static void hex(const uint8_t *p, size_t n) { for (size_t i = 0; i < n; i++) printf("%02x", p[i]); }
static void on_name(uint8_t list, uint16_t total, uint16_t id, const uint8_t *t, uint8_t n)
{
    printf(" %u/%u/%u:", list, total, id); hex(t, n);
}

static uint8_t in[1 << 17], raw[1 << 17], wire[1 << 18], pay[1 << 17];

int main(void)
{
    static char line[1 << 19], cmd[32], arg[1 << 18];
    while (fgets(line, sizeof line, stdin)) {
        arg[0] = 0;
        sscanf(line, "%31s %s", cmd, arg);
        if (!strcmp(cmd, "cobs")) {
            size_t n = unhex(arg, in);
            hex(wire, cobs_encode(in, n, wire));
        } else if (!strcmp(cmd, "encode")) {
            unsigned type, compat, session, frame, chunk, chunks, codec;
            unsigned long long ts;
            sscanf(line, "%*s %u %u %u %u %u %u %llu %u %s", &type, &compat, &session, &frame,
                   &chunk, &chunks, &ts, &codec, arg);
            size_t n = arg[0] == '-' ? 0 : unhex(arg, pay);
            hex(wire, capsule_encode((uint8_t)type, (uint8_t)compat, session, frame,
                                     (uint16_t)chunk, (uint16_t)chunks, ts, (uint8_t)codec,
                                     pay, (uint32_t)n, raw, wire));
        } else if (!strcmp(cmd, "hello")) {
            unsigned mc, win, caps, base, next;
            sscanf(line, "%*s %u %u %u %u %u %s", &mc, &win, &caps, &base, &next, arg);
            size_t n = unhex(arg, in);
            hex(pay, hello_payload((uint16_t)mc, (uint16_t)win, (uint16_t)caps, base, next,
                                   in, (uint16_t)n, pay));
        } else if (!strcmp(cmd, "heartbeat")) {
            unsigned next, flags;
            sscanf(line, "%*s %u %u", &next, &flags);
            hex(pay, heartbeat_payload(next, (uint8_t)flags, pay));
        } else if (!strcmp(cmd, "decode")) {
            size_t n = unhex(arg, in);
            struct capsule_header h;
            const uint8_t *p;
            int rc = capsule_decode(in, n, raw, 36 + 4096, &h, &p);
            printf("rc %d", rc);
            if (rc == 0) {
                printf(" v%u t%u s%u f%u", h.version, h.type, (unsigned)h.session,
                       (unsigned)h.frame);
                if (h.type == 2) {
                    struct hello_ack a;
                    if (parse_hello_ack(p, h.length, h.version, &a) == 0)
                        printf(" hello_ack %u %u %u %u %u", a.chunk_size, a.credits,
                               (unsigned)a.resume, (unsigned)a.max_frame, a.flags);
                } else if (h.type == 5 || h.type == 6) {
                    printf(" ack");
                    int r = on_ack(p, h.length);
                    printf(" credits %u rc %d", credits, r);
                } else if (h.type == 9) {
                    static struct result r;
                    if (parse_result(p, h.length, h.version, &r) == 0) {
                        printf(" result %u %u %u %u", r.status, r.class_id, r.confidence,
                               r.n_boxes);
                        for (int k = 0; k < r.n_boxes; k++)
                            printf(" [%u %u %u %u %u %u]", r.box[k].x0, r.box[k].y0,
                                   r.box[k].x1, r.box[k].y1, r.box[k].score,
                                   r.box[k].class_id);
                    }
                } else if (h.type == 10) {
                    printf(" classes");
                    printf(" rc %d", parse_classes(p, h.length, on_name));
                }
            }
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
"""


def c_blocks() -> str:
    return "\n".join(re.findall(r"```c\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S))


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> subprocess.Popen:
    if CC is None:
        pytest.skip("no C compiler")
    folder = tmp_path_factory.mktemp("c")
    source = folder / "reference.c"
    source.write_text(PRELUDE + c_blocks() + MAIN, encoding="utf-8")
    binary = folder / "reference"
    subprocess.run(
        [
            CC,
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-function",
            "-O1",
            "-o",
            str(binary),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    proc = subprocess.Popen(
        [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    yield proc
    proc.stdin.close()  # type: ignore[union-attr]
    proc.wait(timeout=10)


def ask(program: subprocess.Popen, line: str) -> str:
    assert program.stdin is not None and program.stdout is not None
    program.stdin.write(line + "\n")
    program.stdin.flush()
    return program.stdout.readline().strip()


def test_the_c_cobs_encoder_matches_the_library(program):
    rng = random.Random(12)
    cases = [b"", b"\x00", b"\x01" * 253, b"\x01" * 254, b"\x01" * 255, b"\x01" * 508]
    cases += [
        bytes(
            rng.choice([0, 1, 2, 255]) if rng.random() < 0.3 else rng.randrange(1, 256)
            for _ in range(rng.randrange(0, 700))
        )
        for _ in range(300)
    ]
    for data in cases:
        assert ask(program, f"cobs {data.hex() or '-'}") == cobs.encode(data).hex()


def test_the_c_encoder_reproduces_the_worked_examples_and_random_messages(program):
    hello_c = ask(program, f"hello 1024 64 {CAP_RETRANSMIT} 0 2 {b'cap1'.hex()}")
    assert hello_c == Hello(1024, 64, "cap1", CAP_RETRANSMIT, 0, 2).pack().hex()
    doc = DOC.read_text(encoding="utf-8")
    session = 0x5EED1234
    examples = {
        "8.1": (1, 0, 0, 0, 0, 0, 0, bytes.fromhex(hello_c)),
        "8.3": (3, 0, 7, 0, 1, 1_000_000, 1, b"hello"),
        "8.7": (8, 0, 0, 0, 0, 0, 0, bytes.fromhex(ask(program, f"heartbeat 8 {HB_NEED_CLASSES}"))),
    }
    for section, (t, compat, f, c, n, ts, codec, payload) in examples.items():
        line = f"encode {t} {compat} {session} {f} {c} {n} {ts} {codec} {payload.hex() or '-'}"
        got = ask(program, line)
        header = Header(MessageType(t), session, f, c, n, 0, ts, codec, compat=compat)
        assert got == encode(header, payload).hex(), section
        # The document shows the same wire bytes.
        part = doc[doc.index(f"### {section} ") :]
        shown = re.search(
            r"On the wire \(\d+ bytes\):\n```\n(.*?)```|Wire \(\d+ bytes\):\n```\n(.*?)```",
            part,
            re.S,
        )
        assert shown is not None, section
        text = (shown.group(1) or shown.group(2)).split()
        assert "".join(text) == got, section
    rng = random.Random(5)
    for _ in range(100):
        payload = rng.randbytes(rng.randrange(0, 1200))
        bits = (32, 32, 16, 16, 64, 8)
        fields = [rng.randrange(1, 11), rng.randrange(2), *(rng.getrandbits(b) for b in bits)]
        got = ask(program, "encode " + " ".join(map(str, fields)) + f" {payload.hex() or '-'}")
        t, compat, s, f, c, n, ts, codec = fields
        header = Header(MessageType(t), s, f, c, n, 0, ts, codec, compat=compat)
        assert got == encode(header, payload).hex()


def _tokens(data: bytes) -> list[bytes]:
    return [t for t in data.split(b"\x00") if t]


def test_the_c_decoder_reads_what_the_python_host_sends(program):
    link = HostLink(
        class_names=[f"class {i}" for i in range(300)], box_class_names=["polyp"], results=True
    )
    link.receive(hello(3))
    link.receive(chunk(3, 0, 0, 3) + chunk(3, 0, 2, 3) + meta(3, 0, 3) + frame(3, 1, 1))
    out = link.outgoing()
    for f in iter(link.take, None):
        link.confirm(f)
        link.send_result(f, Result(1, 0.25, ((5, 6, 70, 80, 0.5, 0), (1, 2, 3, 4, 1.0))))
        link.send_result(f, Result.none(ResultStatus.SKIPPED))
    out += link.outgoing()
    seen = set()
    decoder = StreamDecoder(4096)
    for token in _tokens(out):
        (message,) = decoder.feed(b"\x00" + token + b"\x00")
        got = ask(program, f"decode {token.hex()}").split(" ")
        assert got[:2] == ["rc", "0"], got
        h = message.header
        assert got[2:6] == [f"v{h.version}", f"t{int(h.type)}", f"s{h.session}", f"f{h.frame}"]
        rest = " ".join(got[6:])
        seen.add(h.type)
        if h.type == MessageType.HELLO_ACK:
            a = HelloAck.unpack(message.payload)
            assert (
                rest == f"hello_ack {a.chunk_size} {a.credits} {a.resume} {a.max_frame} {a.flags}"
            )
        elif h.type in (MessageType.ACK, MessageType.NACK):
            ack = Ack.unpack(message.payload)
            assert rest.endswith(f"credits {ack.credits} rc 0")
            for index, (count, bitmap) in ack.missing.items():
                pieces = [f"piece {index}.{b}" for b in range(count) if bitmap[b // 8] >> b % 8 & 1]
                assert " ".join(pieces or [f"whole {index}"]) in rest
        elif h.type == MessageType.RESULT:
            r = Result.unpack(message.payload)
            boxes = " ".join(
                f"[{b.x0} {b.y0} {b.x1} {b.y1} {round(b.score * 65535)} {b.class_id}]"
                for b in r.boxes
            )
            head = f"result {r.status} {r.class_id} {round(r.confidence * 65535)} {len(r.boxes)}"
            assert rest == (head + " " + boxes).strip()
        elif h.type == MessageType.CLASSES:
            c = Classes.unpack(message.payload)
            names = " ".join(
                f"{c.kind}/{c.total}/{c.first + k}:{n.encode().hex()}"
                for k, n in enumerate(c.names)
            )
            assert rest == f"classes {names} rc 0".replace("  ", " ")
    assert seen == {
        MessageType.HELLO_ACK,
        MessageType.NACK,
        MessageType.ACK,
        MessageType.RESULT,
        MessageType.CLASSES,
    }


def test_the_c_decoder_refuses_what_the_checks_refuse(program):
    good = encode(Header(MessageType.HEARTBEAT, session=1), Heartbeat(3).pack())[1:-1]
    raw = bytearray(cobs.decode(good))
    assert ask(program, f"decode {good.hex()}").startswith("rc 0 v2 t8 s1")
    flipped = bytearray(raw)
    flipped[5] ^= 1
    assert ask(program, f"decode {cobs.encode(bytes(flipped)).hex()}") == "rc -3"
    v3 = Header(MessageType.HEARTBEAT, session=1, version=3).pack() + bytes(4)
    assert ask(program, f"decode {cobs.encode(v3).hex()}") == "rc -4"
    bad_crc = bytes(raw[:-1]) + bytes([raw[-1] ^ 0xFF])
    assert ask(program, f"decode {cobs.encode(bad_crc).hex()}") == "rc -9"
    v1_classes = Header(MessageType.CLASSES, session=1, version=1).pack() + bytes(4)
    assert ask(program, f"decode {cobs.encode(v1_classes).hex()}") == "rc -6"
