"""Validate documents: schema and admission errors (what a cluster rejects) and analyzer findings.

`check_apply` is the gate the store calls before writing anything; `validate` is what
`graylane validate` prints. Every finding names its resource, file:line and field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from graylane.errors import ValidationError
from graylane.resources.admission import admission_findings
from graylane.resources.analyzers import analyze_set
from graylane.resources.document import ISTIO_NETWORKING, Document, Source, format_path
from graylane.resources.finding import STORE_SOURCE, Finding, Severity
from graylane.resources.kinds import kind_info
from graylane.resources.messages import GATEWAY_PORT_NOT_DEFINED_ON_SERVICE, KIND_NOT_ACTED_ON_LOCALLY
from graylane.resources.model import schema_problems


def _schema_findings(doc: Document) -> list[Finding]:
    return [Finding(Severity.ERROR, None, ": ".join(p for p in (format_path(path), message) if p), doc,
                    tuple(path), message)
            for path, message in schema_problems(doc)]


def _admission(doc: Document) -> list[Finding]:
    """Admission findings; those of Istio kinds are what istioctl's schema.ValidationAnalyzer.<Kind> reports."""
    analyzer = f"schema.ValidationAnalyzer.{doc.kind}" if doc.group == ISTIO_NETWORKING else None
    return [dataclasses.replace(f, analyzer=analyzer) for f in admission_findings(doc)]


def _findings_by_doc(docs: Iterable[Document]) -> list[tuple[Document, list[Finding], list[Finding]]]:
    """For each document: its schema errors, and (only when the schema holds) its admission findings."""
    out = []
    for doc in docs:
        schema = _schema_findings(doc)
        out.append((doc, schema, [] if schema else _admission(doc)))
    return out


def admission_errors(docs: Iterable[Document]) -> list[Finding]:
    """Every error a cluster would refuse the documents for: schema, apiVersion, Istio admission."""
    errors: list[Finding] = []
    for _, schema, admission in _findings_by_doc(docs):
        errors += schema
        errors += [f for f in admission if f.severity is Severity.ERROR]
    return errors


def _context_documents(context: Iterable[dict[str, Any]] | None) -> list[Document]:
    return [Document(body, Source(STORE_SOURCE, 1, i)) for i, body in enumerate(context or [])
            if isinstance(body, dict)]


def analyze(docs: Iterable[Document], context: list[dict[str, Any]] | None = None) -> list[Finding]:
    """Cross-resource analyzers (istioctl codes), validation warnings and kinds the local target ignores.

    `context` holds resource bodies already in the store; input documents win over them for the same key.
    A document that fails the schema check is still analyzed and still counts as a reference target (a
    Service with a bad port protocol still exists), as istioctl does; only one without a kind or a
    name, which names nothing, is left out.
    """
    docs = list(docs)
    findings: list[Finding] = []
    targets: list[Document] = []
    for doc, _schema, admission in _findings_by_doc(docs):
        info = kind_info(doc.group, doc.kind)
        if (info is None or not info.acted_on_locally) and doc.kind:
            findings.append(KIND_NOT_ACTED_ON_LOCALLY.at(doc, (), doc.api_version or "no apiVersion"))
        if doc.kind and doc.name:
            targets.append(doc)
        findings += [f for f in admission if f.severity is not Severity.ERROR]
    findings += analyze_set(targets, _context_documents(context))
    return findings


def _sort_key(finding: Finding) -> tuple[str, int, int, str]:
    doc = finding.doc
    if doc is None:
        return ("", 0, 0, finding.message)
    return (doc.source.file, doc.source.index, doc.line_of(finding.path), finding.message)


def validate(docs: Iterable[Document], context: list[dict[str, Any]] | None = None) -> list[Finding]:
    """All findings (admission errors first by position, then analyzers), sorted by file, document and line."""
    docs = list(docs)
    return sorted(admission_errors(docs) + analyze(docs, context), key=_sort_key)


# Not said when applying to the local mesh: GL0001 is worded by the caller, and the local gateway listens on every
# Gateway server's port, so IST0162 (a port its Service does not expose) is untrue there (`graylane validate`
# still reports it, as istioctl does for a cluster).
_NOT_LOCAL = frozenset({KIND_NOT_ACTED_ON_LOCALLY.code, GATEWAY_PORT_NOT_DEFINED_ON_SERVICE.code})


def apply_warnings(docs: Iterable[Document], context: list[dict[str, Any]] | None = None) -> list[str]:
    """What `graylane apply` prints as `Warning: ...` (as kubectl prints admission warnings) without refusing:
    analyzer findings and validation warnings of severity Error or Warning, judged with `context` (the store).
    GL0001 is left to the caller, which words it for the target it applies to."""
    out = []
    for f in sorted(analyze(docs, context), key=_sort_key):
        if f.severity is Severity.INFO or f.code in _NOT_LOCAL:
            continue
        origin = " ".join(p for p in (f.resource, f.where) if p)
        out.append(f"[{f.code}] ({origin}) {f.message}" if origin else f"[{f.code}] {f.message}")
    return list(dict.fromkeys(out))


def check_apply(docs: Iterable[Document]) -> None:
    """Refuse a batch with any admission error: raises ValidationError listing each one with file:line."""
    errors = sorted(admission_errors(docs), key=_sort_key)
    if not errors:
        return
    lines = [f"{e.plain()} ({e.resource})" if e.resource else e.plain() for e in errors]
    noun = "error" if len(errors) == 1 else "errors"
    raise ValidationError(f"{len(errors)} validation {noun}, nothing was applied:\n  " + "\n  ".join(lines),
                          hint="fix the fields named above; `graylane validate -f FILE` checks files before applying")
