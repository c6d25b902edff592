"""axis.audit.merkle against the RFC 6962 test vectors and an independent implementation (pymerkle)."""
from __future__ import annotations

import pytest
from pymerkle import InmemoryTree

from axis.audit import merkle

# The certificate-transparency test vectors (RFC 6962 leaves; certificate-transparency-go, merkle tests).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
CT_PATH_0_OF_8 = ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                  "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                  "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]


def _oracle(n: int) -> tuple[list[bytes], InmemoryTree]:
    data = [b"entry %d" % i for i in range(n)]
    tree = InmemoryTree(algorithm="sha256")
    for item in data:
        tree.append_entry(item)
    return [merkle.leaf_hash(d) for d in data], tree


def test_the_ct_vectors() -> None:
    leaves = [merkle.leaf_hash(d) for d in CT_LEAVES]
    assert merkle.root(leaves).hex() == CT_ROOT_8
    proof = merkle.inclusion_proof(leaves, 0, 8)
    assert [p.hex() for p in proof] == CT_PATH_0_OF_8
    merkle.verify_inclusion(leaves[0], 0, 8, proof, bytes.fromhex(CT_ROOT_8))
    assert merkle.consistency_proof(leaves, 1, 8) == proof  # RFC 9162 §2.1.5: PROOF(1, D[8]) is that path
    assert merkle.root([]) == merkle.EMPTY_ROOT


def test_roots_and_frontiers_agree_with_pymerkle() -> None:
    leaves, tree = _oracle(70)
    frontier = merkle.Frontier()
    for n, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert frontier.root() == tree.get_root(n) == merkle.root(leaves[:n])
        resumed = merkle.Frontier(frontier.size, frontier.hashes)
        assert resumed.root() == frontier.root()


def test_every_inclusion_proof_checks_and_a_changed_one_does_not() -> None:
    leaves, tree = _oracle(33)
    for size in range(1, 34):
        root = tree.get_root(size)
        for index in range(size):
            proof = merkle.inclusion_proof(leaves, index, size)
            merkle.verify_inclusion(leaves[index], index, size, proof, root)
            with pytest.raises(merkle.ProofError):
                merkle.verify_inclusion(merkle.leaf_hash(b"forged"), index, size, proof, root)
            if proof:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_inclusion(leaves[index], index, size, proof[:-1], root)
                with pytest.raises(merkle.ProofError):
                    merkle.verify_inclusion(leaves[index], index, size, [*proof, proof[0]], root)
            if size > 1:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_inclusion(leaves[index], (index + 1) % size, size, proof, root)


def test_every_consistency_proof_checks_and_a_rewritten_prefix_does_not() -> None:
    leaves, tree = _oracle(33)
    rewritten = [*leaves[:5], merkle.leaf_hash(b"rewritten"), *leaves[6:]]
    for new in range(1, 34):
        new_root = tree.get_root(new)
        for old in range(1, new + 1):
            proof = merkle.consistency_proof(leaves, old, new)
            merkle.verify_consistency(old, new, tree.get_root(old), new_root, proof)
            if old > 5:
                # The log was rewritten at entry 6: the kept checkpoint of `old` no longer matches it.
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(old, new, tree.get_root(old), merkle.root(rewritten[:new]),
                                              merkle.consistency_proof(rewritten, old, new))
            if old < new:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(old, new, merkle.leaf_hash(b"x"), new_root, proof)
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(old, new, tree.get_root(old), new_root, proof[:-1])
