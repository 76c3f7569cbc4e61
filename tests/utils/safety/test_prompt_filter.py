"""The prompt filter: normalisation, whole-word matching, configuration, and the one-line refusal."""
from __future__ import annotations

import pytest

from utils.errors import SafetyRefusal, UserError
from utils.safety import PromptFilter, normalize_prompt


@pytest.mark.parametrize("prompt", ["a NUDE statue", "a Nüde statue", "a n.u.d.e statue", "a n u d e statue", "a n.u.d.e statue",
                                    "two nud3s", "ｎｕｄｅ", "NUDES on a beach"])
def test_disguised_terms_are_caught(prompt):
    found = PromptFilter(["nude"]).check(prompt)
    assert found.blocked and found.term == "nude"


@pytest.mark.parametrize("prompt", ["denude the hill", "prudence", "a nudge", "a red fox in snow"])
def test_words_that_merely_contain_a_term_pass(prompt):
    assert not PromptFilter(["nude"]).check(prompt).blocked


def test_phrases_match_consecutive_words_only():
    f = PromptFilter(["explicit sex"])
    assert f.check("Explicit   SEX!").blocked
    assert not f.check("explicit instructions about sex education").blocked


def test_normalisation_is_documented_and_stable():
    assert normalize_prompt("  Ça  VA?  n-u-d-e  ") == "ca va nude"


def test_default_extra_allow_and_file(tmp_path):
    assert PromptFilter().check("a gory scene").blocked  # the default list
    assert not PromptFilter(allow=["gory"]).check("a gory scene").blocked
    assert PromptFilter(extra=["banana"]).check("Bananas!").blocked
    listed = tmp_path / "blocklist.txt"
    listed.write_text("# my list\nkiwi  # fruit\n\n")
    f = PromptFilter.from_file(listed)
    assert f.terms == ["kiwi"] and f.check("a KIWI").blocked and not f.check("a nude").blocked
    with pytest.raises(UserError, match="not found"):
        PromptFilter.from_file(tmp_path / "missing.txt")
    with pytest.raises(UserError, match="no letters"):
        PromptFilter(["..."])


def test_refusal_is_one_line_with_exit_code_3():
    with pytest.raises(SafetyRefusal) as err:
        PromptFilter(["kiwi"]).refuse_blocked(["a pear", "a kiwi"])
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    assert "prompt 1" in str(err.value) and "'kiwi'" in str(err.value)
    PromptFilter(["kiwi"]).refuse_blocked("a pear")  # nothing to refuse
