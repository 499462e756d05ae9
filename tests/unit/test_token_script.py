import os
import subprocess
import sys

import jwt

from tests.support.processes import ROOT

SECRET = "unit-test-secret-0123456789abcdef"


def mint(*args: str) -> dict:
    env = {**os.environ, "JWT_SECRET": SECRET, "ADMIN_TOKEN": "unit-test-admin-token"}
    out = subprocess.run(
        [sys.executable, "-m", "scripts.token", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    return jwt.decode(out, SECRET, algorithms=["HS256"])


def test_dev_tokens_carry_the_claims_ingress_reads():
    assert mint("alice", "--name", "Alice") | {"iat": 0, "exp": 0} == {
        "sub": "alice",
        "name": "Alice",
        "iat": 0,
        "exp": 0,
    }
    assert mint("boss", "--admin")["role"] == "admin"
    op = mint("olga", "--operator", "acme")
    assert (op["role"], op["tenant"]) == ("operator", "acme")
