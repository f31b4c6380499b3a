"""Dataset versions: immutable, content-addressed snapshots of a data home's catalog, in a local folder or S3.

    manifest.py  what a version contains; the manifest (path, sha256, bytes, rows, schema), hashed
    store.py     the store layout, the local-folder backend, compare-and-swap refs
    s3.py        the S3 backend (boto3; any S3-compatible endpoint)
    refs.py      NAME/TAG refs with their history; NAME[@TAG|@HASH] resolution
    push.py      objects, then manifest, then ref (CAS): an interrupted push publishes nothing
    pull.py      staged, verified download; published into the home in one atomic swap
    query.py     DuckDB over a version in place, with the local catalog's views

Import from the modules (`from thyme_core.versions.push import push`): nothing is re-exported here, so a
module is never shadowed by the function it is named after.
"""
