"""The RFC 9162 (RFC 6962) Merkle tree over the audit log: hashes, proofs, and their checks.

Pure and standard library only, so an auditor's machine verifies with exactly
this code (or any other implementation of the RFC: nothing here is ours).

- leaf hash  = SHA-256(0x00 || leaf input); node hash = SHA-256(0x01 || left || right);
- the root of n leaves splits at the largest power of two below n (RFC 9162 §2.1.1);
- `inclusion_proof` / `consistency_proof` are the RFC's PATH and PROOF (§2.1.3.1,
  §2.1.4.1); `verify_inclusion` / `verify_consistency` are its checks (§2.1.3.2,
  §2.1.4.2), which need only the proof, the sizes and the roots.

`Frontier` is the tree's compact range: at most log2(n) subtree hashes, enough
to append leaves and to compute the root of the tree so far. The checkpoint
writer keeps one per checkpoint so that the next checkpoint reads only the
entries written since (pymerkle, which the tests use as an independent oracle,
recomputes from every leaf instead).

Callers may rely on `ProofError` for every proof that does not check, and on
nothing else being raised for well-typed input.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A Merkle proof that does not lead to the root it should."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of the given leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _subtree(leaves: Sequence[bytes], start: int, end: int, cache: dict[tuple[int, int], bytes] | None = None
             ) -> bytes:
    n = end - start
    if n == 1:
        return leaves[start]
    if cache is not None and (start, end) in cache:
        return cache[(start, end)]
    k = _split(n)
    value = node_hash(_subtree(leaves, start, start + k, cache), _subtree(leaves, start + k, end, cache))
    if cache is not None and n >= 64:  # the large subtrees are the shared ones; a few per 64 leaves in memory
        cache[(start, end)] = value
    return value


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int,
                    cache: dict[tuple[int, int], bytes] | None = None) -> list[bytes]:
    """PATH(index, D[size]): the audit path of leaf `index` in the tree of the first `size` leaves.

    Proofs of several leaves of one tree share most subtrees: pass the same (empty at first) `cache` to
    each call, and the leaves are hashed up once in all instead of once per proof."""
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"no leaf {index} in a tree of {size} (of {len(leaves)} leaves)")
    proof: list[bytes] = []

    def path(m: int, start: int, end: int) -> None:
        n = end - start
        if n == 1:
            return
        k = _split(n)
        if m < k:
            path(m, start, start + k)
            proof.append(_subtree(leaves, start + k, end, cache))
        else:
            path(m - k, start + k, end)
            proof.append(_subtree(leaves, start, start + k, cache))

    path(index, 0, size)
    return proof


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]): that the first tree is a prefix of the second."""
    if not 0 < old_size <= new_size <= len(leaves):
        raise ValueError(f"no consistency proof from {old_size} to {new_size} (of {len(leaves)} leaves)")
    proof: list[bytes] = []

    def subproof(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                proof.append(_subtree(leaves, start, end))
            return
        k = _split(n)
        if m <= k:
            subproof(m, start, start + k, complete)
            proof.append(_subtree(leaves, start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            proof.append(_subtree(leaves, start, start + k))

    if old_size < new_size:
        subproof(old_size, 0, new_size, True)
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> None:
    """RFC 9162 §2.1.3.2; ProofError unless `proof` leads from `leaf` at `index` to `expected_root`."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} cannot be in a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != expected_root:
        raise ProofError("the inclusion proof does not lead to the checkpoint's root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2; ProofError unless the tree of `old_size` is a prefix of the tree of `new_size`."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency between sizes {old_size} and {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("two different roots for the same size")
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself the first node
        path.insert(0, old_root)
    if not path:
        raise ProofError("the consistency proof is empty")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofError("the log today does not extend the kept checkpoint: its first "
                         f"{old_size} entries have another root")
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the newer checkpoint's root")


class Frontier:
    """The compact range of a growing tree: (height, hash) of its perfect subtrees, left to right."""

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self.size = size
        self._nodes = list(hashes)
        if len(self._nodes) != bin(size).count("1"):
            raise ValueError(f"a frontier of {size} leaves has {bin(size).count('1')} hashes, "
                             f"not {len(self._nodes)}")

    @property
    def hashes(self) -> list[bytes]:
        return list(self._nodes)

    def append(self, leaf: bytes) -> None:
        self._nodes.append(leaf)
        size = self.size
        while size & 1:  # each trailing 1 bit of the old size is a subtree of equal height to merge
            right = self._nodes.pop()
            self._nodes[-1] = node_hash(self._nodes[-1], right)
            size >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self._nodes:
            return EMPTY_ROOT
        r = self._nodes[-1]
        for left in reversed(self._nodes[:-1]):
            r = node_hash(left, r)
        return r
