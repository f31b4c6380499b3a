"""Where S3 is and how to talk to it: one boto3 client setup for the version store (versions/s3.py) and for
s3:// prepare sources (prepare/s3_source.py).

Configuration is boto3's own (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_PROFILE, the credential chain,
AWS_DEFAULT_REGION / AWS_REGION); THYME_S3_ENDPOINT, when set, overrides the endpoint. Requests retry with
exponential backoff and jitter (botocore's "standard" retry mode).

`Endpoint` is where S3 is (URL and region) as one process's environment says: a cluster run captures it on
the driver and sends it with every shard task (a Ray worker shares no environment with the driver), so the
workers read and write the same server. Credentials do not travel (a secret never goes into a task's
arguments): each worker uses its own credential chain (instance role, its environment, a profile).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from thyme_core.base.errors import ThymeError

ENDPOINT_ENV = "THYME_S3_ENDPOINT"
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Endpoint:
    """Where S3 is: a URL (None: AWS itself) and a region (None: boto3's default)."""

    url: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls) -> "Endpoint":
        """This process's setting, in boto3's order of precedence with THYME_S3_ENDPOINT first."""
        env = os.environ.get
        return cls(env(ENDPOINT_ENV) or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL") or None,
                   env("AWS_DEFAULT_REGION") or env("AWS_REGION") or None)


def connect(what: str, endpoint: Endpoint | None = None, max_attempts: int = MAX_ATTEMPTS):
    """(session, client) for `endpoint` (default: this process's environment); a ThymeError naming `what`
    when no credentials are found."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    endpoint = endpoint or Endpoint.from_env()
    try:
        session = boto3.session.Session()
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
        raise ThymeError(f"{what}: AWS configuration: {exc}") from None
    if credentials is None:
        raise ThymeError(
            f"{what}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
            "AWS_PROFILE (~/.aws/credentials), or run where an instance/role provides them"
        )
    config = Config(retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=10,
                    read_timeout=120, max_pool_connections=32)
    return session, session.client("s3", endpoint_url=endpoint.url, region_name=endpoint.region, config=config)
