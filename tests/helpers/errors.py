"""What a one-line error looks like from a command run with click's CliRunner."""


def assert_one_line_error(result, *fragments):
    """Exit 1 and one line of output, "Error: ...", holding every fragment."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for f in fragments:
        assert f in lines[0], lines[0]
