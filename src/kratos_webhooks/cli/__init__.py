"""The `kratos-webhooks` command line: thin click commands over the library.

Exit codes: 0 success, 1 rejected or failed, 2 usage or configuration error,
3 a server could not start.
"""

from __future__ import annotations

import click

from .. import __version__
from .audit import audit
from .config import config_group
from .demo import demo
from .inbox import inbox
from .kratos_config import kratos_config
from .relay import relay, relay_outbox
from .secret import secret
from .serve import serve
from .signing import sign, verify

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kratos-webhooks")
def main() -> None:
    """Sign, verify, receive and relay Ory Kratos web hooks."""


main.add_command(sign)
main.add_command(verify)
main.add_command(secret)
main.add_command(config_group)
main.add_command(serve)
main.add_command(demo)
main.add_command(audit)
main.add_command(inbox)
main.add_command(kratos_config)
main.add_command(relay)
main.add_command(relay_outbox)
