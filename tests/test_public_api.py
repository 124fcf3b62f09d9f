"""The public surface: what `import bulkops` offers is exactly `__all__`, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import bulkops


def test_all_names_resolve() -> None:
    """Every name in bulkops.__all__ can be imported (the documented API exists)."""
    for name in bulkops.__all__:
        assert getattr(bulkops, name) is not None, name


def test_all_is_exactly_the_public_names() -> None:
    """Nothing public is exported by accident: every public non-module name is in __all__."""
    import types

    public = {n for n in dir(bulkops) if not n.startswith("_")} - {"annotations", "TYPE_CHECKING", "Any"}
    not_modules = {n for n in public if not isinstance(getattr(bulkops, n), types.ModuleType)}
    assert not_modules <= set(bulkops.__all__)


def test_import_is_light() -> None:
    """`import bulkops` pulls in neither aiohttp, the simulator nor the progress display."""
    code = (
        "import sys, bulkops; "
        "bad = [m for m in ('aiohttp', 'bulkops.simulator', 'bulkops.cli.progress', 'bulkops.engine') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_imports_no_lazy_command() -> None:
    """`bulkops --help` lists every command without importing aiohttp, the simulator or the demo."""
    code = (
        "import sys; from click.testing import CliRunner; from bulkops.cli.main import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
        "assert all(c in r.output for c in ('stop', 'simulate', 'demo', 'report')); "
        "lazy = ('aiohttp', 'bulkops.simulator', 'bulkops.cli.demo', 'bulkops.cli.report_cli'); "
        "print(','.join(m for m in lazy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
