"""Results: typed records, their store on disk, and the queries that gate and report run over them."""

from evalsuite.results.queries import MissingResults, ModelResults, load_results
from evalsuite.results.records import CHECKSUM_FIELD, SCHEMA, RunResult, TaskRef, content_digest, identity
from evalsuite.results.store import ResultStore

__all__ = ["CHECKSUM_FIELD", "SCHEMA", "MissingResults", "ModelResults", "ResultStore", "RunResult", "TaskRef",
           "content_digest", "identity", "load_results"]
