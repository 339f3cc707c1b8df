"""Tokens at rest: MultiFernet (the first key encrypts, all decrypt), each plaintext prefixed with the
installation's identity and the field name, so a ciphertext copied into another row or column fails to
decrypt there. There is no plaintext fallback."""

from __future__ import annotations

import hmac
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app


class TokenDecryptError(Exception):
    """A stored token could not be decrypted (wrong key, or a ciphertext that belongs to another row)."""


DECRYPTED_MEMO_SIZE = 10_000


class TokenCipher:
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        # (company, user, field) -> (ciphertext, plaintext), for the hot path: an access token is read on
        # every proxied call and changes only when refreshed, which stores a new ciphertext. One entry per row
        # and field, so a replaced token leaves memory as soon as its successor is first read.
        self._memo: dict[tuple[int, int, str], tuple[str, str]] = {}

    @staticmethod
    def _binding(inst: Any, field: str) -> bytes:
        return f"pd_app/v1|{inst.company_id}|{inst.user_id}|{field}|".encode()

    def decrypt_memo(self, inst: Any, field: str, ciphertext: str | None) -> str:
        """`decrypt`, remembered per row identity and ciphertext (so the binding check still holds)."""
        memo_key = (inst.company_id, inst.user_id, field)
        hit = self._memo.get(memo_key)
        if hit is not None and ciphertext and hmac.compare_digest(hit[0], ciphertext):
            return hit[1]
        plain = self.decrypt(inst, field, ciphertext)
        if len(self._memo) >= DECRYPTED_MEMO_SIZE:
            self._memo.clear()
        self._memo[memo_key] = (ciphertext or "", plain)
        return plain

    def encrypt(self, inst: Any, field: str, token: str) -> str:
        return self._fernet.encrypt(self._binding(inst, field) + token.encode()).decode()

    def decrypt(self, inst: Any, field: str, ciphertext: str | None) -> str:
        if not ciphertext:
            raise TokenDecryptError(f"no {field} stored")
        try:
            plain = self._fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            raise TokenDecryptError(f"{field} does not decrypt with any configured key") from None
        binding = self._binding(inst, field)
        if not hmac.compare_digest(plain[: len(binding)], binding):
            raise TokenDecryptError(f"{field} belongs to another installation")
        return plain[len(binding) :].decode()

    def rotate(self, ciphertext: str) -> str:
        return self._fernet.rotate(ciphertext.encode()).decode()


def cipher() -> TokenCipher:
    return current_app.extensions["pd_cipher"]
