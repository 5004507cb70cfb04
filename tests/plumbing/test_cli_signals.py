"""run_cli: SIGTERM and SIGHUP stop a command as Ctrl-C does, with the conventional exit status 128 + n."""
import os
import signal

import pytest

from nanosgm.plumbing import cli


@pytest.fixture
def guarded_signals():
    """SIGTERM and SIGHUP recorded instead of ending pytest, should run_cli not handle them."""
    seen = []
    fallback = lambda signum, frame: seen.append(signum)           # noqa: E731
    before = {s: signal.signal(s, fallback) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield seen, fallback
    for s, handler in before.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_ends_the_body_like_ctrl_c(capsys, guarded_signals, signum, status):
    seen, fallback = guarded_signals
    reached = []

    def body(argv):
        os.kill(os.getpid(), signum)
        reached.append("after the signal")        # never: the signal stops the body here
        return 0
    assert cli.run_cli(body, []) == status
    assert reached == [] and seen == []
    assert capsys.readouterr().err.strip() == f"stopped by {signal.Signals(signum).name}"
    assert signal.getsignal(signum) is fallback   # the handlers in place before are back


def test_a_command_words_what_it_kept_with_the_signal(capsys, guarded_signals):
    def body(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            raise cli.CliError(f"{cli.interruption()}: the first epoch is kept", code=cli.interruption_status())
        return 0
    assert cli.run_cli(body, []) == 143
    assert capsys.readouterr().err == "error: stopped by SIGTERM: the first epoch is kept\n"


def test_ctrl_c_is_still_status_130(capsys):
    def body(argv):
        raise KeyboardInterrupt
    assert cli.run_cli(body, []) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
