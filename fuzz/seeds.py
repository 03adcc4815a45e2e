#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

Seeds use the placeholders of fuzz/src/lib.rs ({J} a valid token, {K} a
valid API key, {S} the session cookie, ...), which the targets replace with
the credentials each process makes at start-up. Run from anywhere:
    python3 fuzz/seeds.py
"""

import hashlib
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

SEEDS = {
    "authorization_header": [
        b"\x00Bearer {B}",
        b"\x00bearer   {B}",
        b"\x00Bearer {B}\nBearer {B}",
        b"\x00Bearer {B}x",
        b"\x00Basic dXNlcjpwYXNzd29yZA==",
        b"\x00Bearer {B} trailing",
        b"\x00Bearer ",
        b"\x00Bearer \xff\xfe",
        b"\x02?access_token={B}",
        b"\x02Bearer {B}\n?access_token={B}",
        b"\x02?access_token={B}&access_token={B}",
        b"\x04Bearer wrong-token-abcdef",
        b"\x08",
        b"\x08Basic Zm9vOmJhcg==",
        b"\x01{K}",
        b"\x01  {K}  ",
        b"\x01{K}\n{K}",
        b"\x01{R}",
        b"\x01{X}",
        b"\x01{K}x",
        b"\x03?api_key={K}",
        b"\x03{K}\n?api_key={K}",
        b"\x05not-a-key",
    ],
    "jwt_verify": [
        b"\x00{J}",
        b"\x00{E}",
        b"\x00{D}",
        b"\x00{O}",
        b"\x00{J}x",
        b"\x00{E}A",
        b"\x00eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.",
        b"\x00eyJhbGciOiJIUzI1NiJ9.e30.",
        b"\x00a.b.c",
        b"\x00....",
        b"\x01" + bytes(range(64)),
        b"\x01" + b"\x00" * 48,
        b"\x01\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\x01\x08\x03\x00\x02abc\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
        b"\x01\x40" + b'{"alg":"HS256","kid":"hs"}' + b"\x00" * 16,
    ],
    "cookies": [
        b"\x00{S}",
        b"\x00{S}; {S}",
        b"\x00{S}\n{S}",
        b"\x00session={V}x",
        b"\x00session=\"{V}\"",
        b"\x00theme=dark; {S}; lang=en",
        b"\x00jwt={J}",
        b"\x00jwt=\"{E}\"",
        b"\x00jwt={J}; jwt={D}",
        b"\x00jwt={O}",
        b"\x00jwt={J}; {S}",
        b"\x01{S}",
        b"\x00session=; jwt=",
        b"\x00session=%41%42; jwt=%7B",
    ],
    "forwarded": [
        b"\x01x:203.0.113.7, 10.0.0.2",
        b"\x01x:10.0.0.5\nx:203.0.113.9",
        b"\x00x:203.0.113.7",
        b"\x01r:203.0.113.99",
        b"\x01x:unknown, 10.0.0.9",
        b"\x03f:for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.3",
        b"\x03f:For=unknown;by=10.0.0.1",
        b"\x03f:for=203.0.113.5;for=203.0.113.6",
        b"\x03f:for=\"203.0.113.5\\\"\", for=10.0.0.3",
        b"\x09x:2001:db8::5, fd00::2",
        b"\x05x:::ffff:203.0.113.4",
        b"\x11x:203.0.113.8",
        b"\x01x:[2001:db8::7]:80, 10.1.2.3:8080",
    ],
    "api_key": [
        b"\x00{K}",
        b"\x00{U}",
        b"\x00{K}\n{K}",
        b"\x00{R}",
        b"\x00{X}",
        b"\x00 {K} ",
        b"\x00{K}0",
        b"\x01q:{K}",
        b"\x01{K}\nq:{K}",
        b"\x01q:{K}\nq:{U}",
        b"\x01?api%5Fkey={K}",
        b"\x02{U}",
        b"\x03",
        b"\x03q:",
        b"\x04{R}",
        b"\x00tak_0000000000_00000000000000000000000000000000AAAAAA",
    ],
    "csrf": [
        b"\x00POST\nc:{S}\ns:cross-site\no:https://evil.example",
        b"\x00POST\nc:{S}\ns:same-origin",
        b"\x00POST\nc:{S}\ns:same-site\no:https://app.example.com",
        b"\x00PUT\nc:{S}\ns:same-site\no:HTTPS://APP.EXAMPLE.COM:443",
        b"\x00POST\nc:{S}\no:https://victim.example\nh:victim.example",
        b"\x00POST\nc:{S}\no:https://evil.example\nh:victim.example",
        b"\x00POST\nc:{S}\no:null",
        # Finding 1 of NOTES-h11-fuzz.md: an Origin with obs-text bytes.
        b"\x00POST\nc:{S}\no:https://evil.example\x80\nh:victim.example",
        # Finding 2: a port that is not a number is dropped.
        b"\x00PUT\nc:{S}\ns:same-site\no:https://app.example.com:evil",
        b"\x00POST\nc:{S}\no:https://a.example\no:https://b.example",
        b"\x00DELETE\nc:{S}\ns:cross-site\ns:same-origin",
        b"\x00POST\nr:https://evil.example/page\nc:{S}",
        b"\x00GET\nc:{S}\ns:cross-site",
        b"\x00POST\ns:cross-site",
        b"\x01POST\nc:{S}\ns:same-origin\nt:{T}",
        b"\x01POST\nc:{S}\nt:{T}\nt:{T}",
        b"\x01DELETE\nc:{S}\nt:wrong-token",
        b"\x02PATCH\nc:{S}\ns:cross-site",
    ],
    "query_token": [
        b"\x00?access_token={J}",
        b"\x00?access_token={J}&access_token={J}",
        b"\x00?access%5Ftoken={E}",
        b"\x00?access_token={O}",
        b"\x00socket?access_token={D}#frag",
        b"\x00?access_token=",
        b"\x01?api_key={K}",
        b"\x01?api_key={R}",
        b"\x01?api_key=%7B%7D%ZZ",
        b"\x02?api_key={U}&x=1",
        b"\x02?access_token={J}&api_key={K}",
        b"\x04?access_token=junk",
    ],
}

NAMES = [
    "authorization", "x-api-key", "cookie", "x-forwarded-for", "forwarded",
    "x-real-ip", "origin", "sec-fetch-site", "host", "referer",
    "x-csrf-token", "content-type", "te", "accept", "user-agent",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
VERSIONS = {"1.0": 0, "1.1": 1, "2": 2, "3": 3}


def head(method, uri, headers, version="1.1", trusted=False):
    """The byte layout fuzz_targets/stack.rs decodes."""
    out = bytearray()
    if method in METHODS:
        out.append(METHODS.index(method))
    else:
        out += bytes([255, len(method)]) + method.encode()
    out.append(VERSIONS[version])
    out.append(1 if trusted else 0)
    out += bytes([len(uri)]) + uri
    for name, value, *repeat in headers:
        out.append(NAMES.index(name))
        out.append((repeat[0] - 1) if repeat else 0)
        out.append(len(value))
        out += value
    return bytes(out)


SEEDS["stack"] = [
    head("GET", b"/", [("authorization", b"Bearer {J}")]),
    head("GET", b"/admin?x=1", [("authorization", b"Bearer {E}"), ("authorization", b"Bearer {D}")]),
    head("GET", b"/", [("x-api-key", b"{K}")]),
    head("GET", b"/", [("x-api-key", b"{U}")]),
    head("DELETE", b"/", [("x-api-key", b"{R}")]),
    head("GET", b"/", [("cookie", b"{S}")]),
    head("POST", b"/", [("cookie", b"{S}"), ("sec-fetch-site", b"cross-site"), ("origin", b"https://evil.example")]),
    head("POST", b"/", [("cookie", b"{S}"), ("origin", b"https://evil.example"), ("host", b"api.example")]),
    head("POST", b"/", [("cookie", b"{S}"), ("sec-fetch-site", b"same-origin"), ("x-csrf-token", b"{T}")]),
    head("POST", b"/rpc", [("content-type", b"application/grpc"), ("te", b"trailers"), ("authorization", b"Bearer junk")], version="2"),
    head("GET", b"/", [("x-forwarded-for", b"203.0.113.7, 10.0.0.2"), ("authorization", b"Bearer {J}")], trusted=True),
    head("GET", b"/", [("forwarded", b'for="[2001:db8::1]";proto=https'), ("x-real-ip", b"203.0.113.1")], trusted=True),
    head("GET", b"/", [("cookie", b"a" * 200, 48)]),
    head("GET", b"/", [("authorization", b"Bearer \xff\xfe{J}")]),
    head("PROPFIND", b"*", [("x-api-key", b"{K}"), ("cookie", b"jwt={J}")]),
]


def main():
    root = os.path.join(HERE, "corpus")
    for target, seeds in SEEDS.items():
        d = os.path.join(root, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for seed in seeds:
            name = hashlib.sha1(seed).hexdigest()
            with open(os.path.join(d, name), "wb") as f:
                f.write(seed)


if __name__ == "__main__":
    main()
