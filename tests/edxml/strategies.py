"""Hypothesis strategies for edXML models (test helpers, not tests)."""
from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from axis.edxml import model as m

# XML 1.0 cannot carry most control characters, and a parser turns \r into \n.
xml_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                                 include_characters="\n\t"), max_size=40)
name_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Z")), min_size=1, max_size=30)
vietnamese = st.sampled_from(["Văn phòng Chính phủ", "UBND Tỉnh Nghệ An", "Công văn", "Hỏa tốc",
                              "V/v kết nối, liên thông phần mềm quản lý văn bản", " có dấu cách "])
text = st.one_of(vietnamese, xml_text.filter(bool))
opt_text = st.none() | text
codes = st.builds(lambda a, b, c, g, n: f"{a:03d}.{b:02d}.{c:02d}.{g}{n:02d}",
                  st.integers(0, 999), st.integers(0, 99), st.integers(0, 99),
                  st.sampled_from("ABCDEFGHIJK"), st.integers(0, 99)) | st.sampled_from(["G09.01", "H37.DN.001"])
dates = st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31))
timestamps = st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2100, 12, 31)).map(
    lambda t: t.replace(microsecond=0))
small = st.integers(0, 999)


def tuples(strategy, min_size=0, max_size=3):
    return st.lists(strategy, min_size=min_size, max_size=max_size).map(tuple)


organizations = st.builds(m.Organization, organ_id=codes, organization_in_charge=opt_text, organ_name=opt_text,
                          organ_add=opt_text, email=opt_text, telephone=opt_text, fax=opt_text, website=opt_text)
response_for = st.builds(m.ResponseFor, organ_id=st.none() | codes, code=opt_text,
                         promulgation_date=st.none() | dates, document_id=opt_text)
staff = st.builds(m.StaffInfo, department=opt_text, staff=opt_text, mobile=opt_text, email=opt_text)
header = st.builds(
    m.MessageHeader,
    from_=organizations, to=tuples(organizations, 1, 4), code=st.builds(m.Code, text.filter(str.strip), text),
    promulgation_info=st.builds(m.PromulgationInfo, place=opt_text, promulgation_date=dates),
    document_type=st.builds(m.DocumentType, small, st.none() | small, opt_text), subject=text, content=opt_text,
    signer_info=st.builds(m.SignerInfo, competence=opt_text, position=opt_text, full_name=text.filter(str.strip)),
    due_date=st.none() | dates,
    to_places=st.none() | tuples(text),
    other_info=st.none() | st.builds(m.OtherInfo, st.integers(0, 4), opt_text, opt_text, st.none() | small,
                                     st.none() | small, st.none() | st.booleans(), st.none() | tuples(text)),
    response_for=st.none() | tuples(response_for, 1, 2), steering_type=st.none() | st.integers(0, 2),
    document_id=text.filter(str.strip),
)
business = st.builds(
    m.Business, business_doc_type=st.integers(0, 3), business_doc_reason=opt_text, document_id=opt_text,
    paper=st.none() | st.integers(0, 1),
    document_info=st.none() | st.builds(m.BusinessDocumentInfo, st.integers(0, 1), st.integers(0, 1),
                                        st.none() | tuples(st.builds(m.Receiver, codes, st.integers(0, 1)))),
    replacements=st.none() | tuples(st.builds(m.ReplacementInfo, text.filter(str.strip), tuples(codes))),
    staff_info=st.none() | staff,
)
attachments = st.builds(m.Attachment, content_id=name_text.map(lambda s: "cid:" + s),
                        attachment_name=text.filter(str.strip), description=opt_text,
                        content_type=st.sampled_from(["application/pdf", "application/zip"]),
                        data=st.binary(max_size=300))


@st.composite
def document_packets(draw):
    files = draw(tuples(attachments, 0, 3))
    return m.DocumentPacket(header=draw(header), traces=draw(tuples(st.builds(m.TraceHeader, codes, timestamps), 1)),
                            business=draw(st.none() | business), manifest=tuple(a.reference() for a in files),
                            attachments=files)


status_response_for = st.builds(m.ResponseFor, organ_id=codes, code=opt_text, promulgation_date=st.none() | dates,
                                document_id=text.filter(str.strip))
status_packets = st.builds(m.StatusPacket, from_=organizations, response_for=status_response_for,
                           staff_info=st.none() | staff, status_code=st.sampled_from(list(m.StatusCode)),
                           description=opt_text, timestamp=timestamps)
packets = document_packets() | status_packets
