"""The auditor's questions: which documents are overdue, what the traffic was (docs/auditor-guide.md).

- `calendar`: working time (days, hours, holidays, one time zone), pure;
- `deadlines`: the legal deadline of a delivery (QĐ 28/2018) and how late an answer was, pure;
- `overdue`: the overdue report, judged delivery by delivery from the store;
- `stats`: traffic statistics per agency or per day, from the store.

The reading of the audit log itself is the store's (`Store.audit_page`). Nothing here writes.
"""
