"""The whole road under fuzzing: mutants through the real gateway and the real intake, and the oracle.

`Road` drives a started `Deployment` (tests/e2e/harness.py: `axis serve --workers 1` with its gateway
child, its signer process and one intake worker process) over HTTP, as agencies do, each with its own
credential. `Road.setup()` sends one valid document that both recipients take and acknowledge, so
that status packets about it are valid; `Road.try_one(draw)` makes a fresh valid packet, mutates it
once (tests/fuzz/mutations.py), submits it and checks the answer; `Road.final_problems()` checks the
campaign as a whole. The oracle:

- every answer to `POST /v1/packets` is a 200 with an outcome (accepted, refused, duplicate) or a 202
  whose outcome the submission then gets; never a 5xx, another 4xx or a dropped connection;
- every refusal carries a code of axis/refusals.py, and never AX501 INTERNAL (an exception in intake:
  a crash the fuzzer found);
- a mutant that must be refused (a forged signature, an untrusted certificate, a DOCTYPE...) is not
  accepted; any other accepted mutant that the test did not itself sign carries exactly the signed
  content of the valid packet it came from (`signed_view`: the document without its Signature, as
  exclusive C14N without comments sees it, no comment touching text, the Signature's place, its
  children, its SignedInfo, and certificates of base64 and XML whitespace only), and raw signxml
  verifies it with the sender's registered certificate;
- after the campaign: `axis serve` and every process of its session are the ones that started (no
  worker died and was replaced), its log has no traceback and no failed batch (`BROKEN`: a batch that
  fails at the gateway is decided by the hub instead, which the answer alone would hide), /healthz
  answers, a valid packet is accepted, and every delivery any agency can fetch is byte-identical to a
  packet the test signed or to an accepted mutant, and verifies with raw signxml against the
  registered certificate of its sender (an engine independent of the xmlsec one Axis runs).
"""
from __future__ import annotations

import base64
import collections
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier

from adapters.edge import read_credential
from axis.edxml import Attachment, Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document, new_status
from axis.refusals import RefusalCode
from axis.trust import keys
from tests.e2e.harness import Deployment
from tests.e2e.packets import AGENCIES, G17, G22, H14, H41, TestPKI
from tests.fuzz.mutations import DS, Case, Draw, Materials, Mutant, mutate, tree

CODES = {f"AX{code.number:03d}" for code in RefusalCode}
SENDERS = (G22, G17)
RECIPIENTS = (H41, H14)
STATUSES = ("01", "03", "04", "05", "06")
WAIT = 30
BROKEN = ("Traceback", "unexpected error", "could not be decided here", "a worker process died",
          "internal error refusing", "failed; its unsettled messages", "failed; its messages will be delivered")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def materials(pki: TestPKI) -> Materials:
    return Materials.build({code: pki.signer(code) for code in AGENCIES},
                           keys.load_certificate(pki.ca / "ca.pem"), keys.load_private_key(pki.ca / "ca.key.pem"))


def install_crl(deployment: Deployment, made: Materials) -> None:
    """The deployment's CRL, now also listing each agency's revoked certificate (before `serve()`)."""
    (deployment.data / "pki" / "crl.pem").write_bytes(keys.crl_pem(made.crl()))


@dataclass
class Answer:
    status: int | None          # None: no HTTP answer at all
    outcome: str | None = None
    code: str | None = None
    text: str = ""
    queued: bool = False        # answered 202 first: the gateway did not decide it within ?wait=


@dataclass
class Tally:
    """What a campaign tried and how Axis answered, per family."""

    tried: collections.Counter[str] = field(default_factory=collections.Counter)
    answers: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    mutations: collections.Counter[str] = field(default_factory=collections.Counter)
    passed: collections.Counter[str] = field(default_factory=collections.Counter)   # accepted or duplicate

    def add(self, mutant: Mutant, answer: Answer) -> None:
        self.tried[mutant.family] += 1
        self.mutations[mutant.label] += 1
        what = answer.outcome if answer.outcome != "refused" else answer.code
        self.answers[(mutant.family, str(what if answer.status == 200 else f"HTTP {answer.status}"))] += 1
        if answer.queued:
            self.answers[(mutant.family, "queued first")] += 1
        if answer.outcome in ("accepted", "duplicate"):
            self.passed[f"{mutant.label} ({answer.outcome})"] += 1


class Road:
    def __init__(self, deployment: Deployment, pki: TestPKI, made: Materials) -> None:
        self.deployment, self.pki, self.materials = deployment, pki, made
        self.clients = {code: httpx.Client(base_url=deployment.gateway_url, timeout=WAIT + 30, headers={
            "Authorization": f"Bearer {read_credential(deployment.credential_file(code))}"}) for code in AGENCIES}
        self.deliverable: dict[str, str] = {}     # sha256 of bytes that may be delivered -> why
        self.tally = Tally()
        self.number = 0
        self.anchor: Any = None
        self.session: set[int] = set()
        self.fetched = 0

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    # ------------------------------------------------------------ valid packets
    def document(self, sender: str, recipients: list[str]) -> Any:
        self.number += 1
        return new_document(Organization(sender, organ_name=AGENCIES[sender]), [Organization(c) for c in recipients],
                            code_number=str(self.number), code_notation="FUZZ", subject="Về việc thử nghiệm",
                            signer=SignerInfo(full_name="Nguyễn Văn A"),
                            attachments=[Attachment(content_id="cid:1", attachment_name="a.pdf",
                                                    content_type="application/pdf",
                                                    data=b"%PDF-1.4 " + bytes(range(256)))])

    def case(self, draw: Draw) -> Case:
        if draw.choice(["document", "document", "status"]) == "status":
            sender = draw.choice(RECIPIENTS)
            unsigned = packet_to_bytes(new_status(Organization(sender, organ_name=AGENCIES[sender]), self.anchor,
                                                  draw.choice(STATUSES)))
            kind = "status"
        else:
            sender = draw.choice(SENDERS)
            recipients = draw.choice([[H41], [H14], [H41, H14]])
            unsigned, kind = packet_to_bytes(self.document(sender, recipients)), "document"
        return Case(kind, unsigned, sender, self.materials, tuple(c for c in AGENCIES if c != sender))

    def signed(self, signer: str, unsigned: bytes) -> bytes:
        data = self.materials.signers[signer].sign(unsigned)
        self.deliverable[sha256(data)] = "signed by the test"
        return data

    # ------------------------------------------------------------ talking to the gateway
    def submit(self, who: str, data: bytes) -> Answer:
        client = self.clients[who]
        try:
            answer = client.post("/v1/packets", content=data, params={"wait": WAIT},
                                 headers={"Content-Type": "application/xml"})
            queued = answer.status_code == 202
            if queued:
                submission = answer.json()["submission"]
                deadline = time.monotonic() + 120
                while answer.status_code == 202 or answer.json().get("outcome") == "queued":
                    if time.monotonic() > deadline:
                        return Answer(202, "queued", None, "not decided within 120 s")
                    answer = client.get(f"/v1/submissions/{submission}", params={"wait": WAIT})
        except httpx.HTTPError as exc:
            return Answer(None, text=f"{type(exc).__name__}: {exc}")
        try:
            found = answer.json()
        except ValueError:
            return Answer(answer.status_code, text=answer.text[:300])
        if answer.status_code != 200:
            return Answer(answer.status_code, None, (found.get("error") or {}).get("code"), answer.text[:300])
        return Answer(200, found.get("outcome"), found.get("code"), str(found.get("message"))[:300], queued)

    def setup(self) -> None:
        """One valid document both recipients take and acknowledge: what the status packets answer."""
        self.anchor = self.document(G22, list(RECIPIENTS))
        answer = self.submit(G22, self.signed(G22, packet_to_bytes(self.anchor)))
        assert answer.outcome == "accepted", answer
        for code in RECIPIENTS:
            items = self.clients[code].get("/v1/inbox").json()["items"]
            assert len(items) == 1, items
            done = self.clients[code].post(f"/v1/inbox/{items[0]['axis_id']}/ack")
            assert done.status_code == 200, done.text
        [hub] = self.deployment.hubs
        self.session = set(hub.leftovers())

    # ------------------------------------------------------------ one example
    def try_one(self, draw: Draw, family: str | None = None) -> tuple[Mutant, Answer, list[str]]:
        case = self.case(draw)
        mutant = mutate(case, draw, family)
        self.deliverable[sha256(mutant.base)] = "signed by the test"
        if mutant.signed_by_test:
            self.deliverable[sha256(mutant.data)] = "signed by the test"
        answer = self.submit(mutant.submit_as or case.sender, mutant.data)
        self.tally.add(mutant, answer)
        problems = judge(mutant, answer, self.pki)
        if answer.outcome in ("accepted", "duplicate") and not problems:
            self.deliverable.setdefault(sha256(mutant.data), f"accepted mutant {mutant.label}")
        return mutant, answer, problems

    # ------------------------------------------------------------ the campaign as a whole
    def final_problems(self) -> list[str]:
        problems: list[str] = []
        [hub] = self.deployment.hubs
        if not hub.alive():
            return [f"axis serve died:\n{hub.stderr()[-3000:]}"]
        now = set(hub.leftovers())
        if now != self.session:
            problems.append(f"processes of axis serve changed (a worker died?): {sorted(self.session)} -> "
                            f"{sorted(now)}\n{hub.stderr()[-3000:]}")
        # What the processes say when something broke that the answers hide (a batch that failed at the gateway
        # is decided by the hub instead; a dead worker is replaced).
        for line in hub.stderr().splitlines():
            if any(sign in line for sign in BROKEN):
                problems.append(f"axis serve logged: {line[:500]}")
        health = self.clients[G22].get("/healthz")
        if health.status_code != 200:
            problems.append(f"/healthz answers {health.status_code}")
        fresh = self.submit(G17, self.signed(G17, packet_to_bytes(self.document(G17, [H41]))))
        if fresh.outcome != "accepted":
            problems.append(f"a valid packet after the campaign: {fresh}")
        for code, body in self.deliveries():
            self.fetched += 1
            why = self.deliverable.get(sha256(body))
            if why is None:
                problems.append(f"{code} can fetch {len(body)} bytes the test never signed nor saw accepted: "
                                f"{body[:200]!r}")
            elif (trouble := verify_raw(body, self.pki)) is not None:
                problems.append(f"{code} can fetch a delivery ({why}) that raw signxml does not verify: {trouble}")
        return problems

    def deliveries(self) -> Iterator[tuple[str, bytes]]:
        """(agency, bytes) of everything waiting in any agency's inbox (documents and statuses)."""
        for code, client in self.clients.items():
            after: str | None = None
            while True:
                page = _get(client, "/v1/inbox", {"limit": 1000, **({"after": after} if after else {})}).json()
                for item in page["items"]:
                    yield code, _get(client, f"/v1/inbox/{item['axis_id']}").content
                after = page.get("next")
                if not after:
                    break


def _get(client: httpx.Client, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
    """GET, waiting as the gateway's rate limit asks (a long campaign leaves thousands of deliveries to fetch)."""
    while True:
        answer = client.get(path, params=params)
        if answer.status_code != 429:
            assert answer.status_code == 200, answer.text
            return answer
        time.sleep(float(answer.headers.get("Retry-After", "1")))


def judge(mutant: Mutant, answer: Answer, pki: TestPKI) -> list[str]:
    """What is wrong with Axis's `answer` to `mutant` (nothing: an empty list)."""
    what = f"{mutant.label}: {answer}"
    if answer.status is None:
        return [f"no HTTP answer (dropped connection?) to {what}"]
    if answer.status != 200:
        return [f"HTTP {answer.status} (not an outcome) to {what}"]
    if answer.outcome == "refused":
        if answer.code not in CODES:
            return [f"a refusal without a code of axis/refusals.py: {what}"]
        if answer.code == "AX501":
            return [f"AX501 INTERNAL: intake raised on {what}"]
        return []
    if answer.outcome not in ("accepted", "duplicate"):
        return [f"an outcome that is none of accepted/refused/duplicate: {what}"]
    if mutant.must_refuse:
        return [f"accepted, but must be refused ({mutant.must_refuse}): {what}"]
    if not mutant.signed_by_test:
        if signed_view(mutant.data) != signed_view(mutant.base):
            return [f"accepted content the test never signed: {what}"]
        if (trouble := verify_raw(mutant.data, pki)) is not None:
            return [f"accepted, and raw signxml does not verify it with the sender's certificate ({trouble}): {what}"]
    return []


def signed_view(data: bytes) -> tuple[Any, ...] | None:
    """What a valid signature over `data` would vouch for: the document without its Signature (comments
    kept), where the Signature sits, its children's names and its SignedInfo. None: not one signature."""
    try:
        root = tree(data)
    except etree.XMLSyntaxError:
        return None
    signatures = root.findall(f".//{DS}Signature")
    if len(signatures) != 1:
        return None
    signature = signatures[0]
    parent = signature.getparent()
    if parent is None:
        return None
    signed_info = signature.find(f"{DS}SignedInfo")
    info = etree.tostring(signed_info, method="c14n", exclusive=True) if signed_info is not None else None
    place = root.getroottree().getpath(parent)
    children = tuple(child.tag for child in signature)
    # As the enveloped-signature transform does: the element goes, the text after it stays.
    previous = signature.getprevious()
    if signature.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + signature.tail
        else:
            parent.text = (parent.text or "") + signature.tail
    parent.remove(signature)
    return (place, children, info, _touching_text(root), _certificates_readable(signature),
            etree.tostring(root, method="c14n", with_comments=False))


def _certificates_readable(signature: etree._Element) -> bool:
    """Whether every X509Certificate is base64 and XML whitespace, nothing else: KeyInfo is never signed, so
    anything else in it would reach recipients unsigned."""
    try:
        for cert in signature.iter(f"{DS}X509Certificate"):
            base64.b64decode((cert.text or "").translate(str.maketrans("", "", " \t\r\n")), validate=True)
    except ValueError:
        return False
    return True


def _touching_text(root: etree._Element) -> int:
    """How many comments touch non-blank text. Such a comment splits a value the signature saw whole, and Axis
    refuses it (docs/trust.md); a comment between elements changes nothing a reader sees, and may stay."""
    touching = 0
    for comment in root.iter(etree.Comment):
        parent, previous = comment.getparent(), comment.getprevious()
        before = (previous.tail if previous is not None else parent.text if parent is not None else None) or ""
        touching += bool(before.strip() or (comment.tail or "").strip())
    return touching


_RAW = SignatureConfiguration(expect_references=1,
                              signature_methods=frozenset({SignatureMethod.ECDSA_SHA256, SignatureMethod.RSA_SHA256}),
                              digest_algorithms=frozenset({DigestAlgorithm.SHA256}))


def verify_raw(data: bytes, pki: TestPKI) -> str | None:
    """None if raw signxml verifies `data` with the registered certificate of the agency it names as sender."""
    try:
        root = tree(data)
        sender = root.findtext(".//{*}From/{*}OrganId") or root.findtext(".//{*}MessageHeader/{*}OrganId")
        if sender not in AGENCIES:
            return f"no registered sender ({sender!r})"
        cert = keys.load_certificate(pki.cert(sender)).public_bytes(serialization.Encoding.PEM)
        XMLVerifier().verify(data, x509_cert=cert.decode(), expect_config=_RAW, ignore_ambiguous_key_info=True)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding, reported with its type
        return f"{type(exc).__name__}: {exc}"
    return None
