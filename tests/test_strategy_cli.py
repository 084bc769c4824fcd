"""`contentforge topics plan`, `blog write`, `social derive`: bad input fails in one line, before any
server starts (no ``prefect_server`` fixture here, so a server start would hang or fail)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentforge_cli.main import app


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bad input must fail before the server is contacted")

    monkeypatch.setattr("contentforge_cli.runtime.connect", refuse)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["topics", "plan", "anyone", "--month", "2026-13"], "month must be YYYY-MM, got '2026-13'"),
        (["topics", "plan", "nobody-01", "--month", "2026-12"], "unknown persona 'nobody-01'"),
        (["blog", "write", "topic-missing"], "no topic 'topic-missing'"),
        (["blog", "write", "t1", "--pages", "30"], "Invalid value for '--pages'"),
        (["social", "derive", "post-1", "--platform", "myspace"], "unknown platform 'myspace'; use one of"),
        (["social", "derive", "post-missing", "--platform", "instagram"], "no blog post 'post-missing'"),
    ],
)
def test_bad_input_fails_with_one_clear_line(
    settings_env: Path, no_server: None, args: list[str], message: str
) -> None:
    code, output = run(*args)
    assert code == 2, output
    assert message in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_topics_blog_and_social_from_the_cli(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: str
) -> None:
    from contentforge.config import get_settings
    from tasks import resources
    from tasks.strategy import store

    monkeypatch.setenv("CONTENTFORGE_TEXT_PROVIDERS", "offline")
    monkeypatch.setenv("CONTENTFORGE_APPROVE_ON_TIMEOUT", "1")
    get_settings.cache_clear()
    code, output = run("personas", "random", "--type", "fitness", "--seed", "3", "--save")
    assert code == 0, output
    persona_id = resources.repository().list_personas()[0].id

    code, output = run("topics", "plan", persona_id, "--month", "2026-12", "--count", "2", "--timeout", "1")
    assert code == 0, output
    assert f"2 topics for {persona_id} 2026-12: 2 approved, 0 rejected (timed out)" in output
    topic_id = store().topics(persona_id=persona_id, month="2026-12")[0].id
    assert f"next: contentforge blog write {topic_id}" in output

    code, output = run("blog", "write", topic_id, "--pages", "4", "--timeout", "1")
    assert code == 0, output
    post = store().get_blog_post(f"post-{topic_id}")
    assert f"post {post.id}: approved" in output and f"next: contentforge social derive {post.id}" in output
    assert "this is a BRIEF" in output and "a full 4-10 page draft needs a model" in output

    code, output = run("social", "derive", post.id, "--platform", "instagram", "--platform", "x")
    assert code == 0, output
    assert "instagram" in output and " x " in f" {output} "
    assert {p.platform.value for p in store().social_posts(post.id)} == {"instagram", "x"}
