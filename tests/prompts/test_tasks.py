"""The task YAMLs load through lm-eval's TaskManager and render the prompts we document."""

import pytest
import yaml
from lm_eval.tasks import TaskManager

from medbench.cli.tasks_readme import readme_path, render_readme
from medbench.data.loader import load_rows
from medbench.eval.request import SHORT_TASKS, RunError, task_names
from medbench.paths import tasks_dir
from medbench.prompts.answers import extract_answer


@pytest.fixture(scope="module")
def tm():
    return TaskManager(include_path=str(tasks_dir()), include_defaults=False)


ALL = [
    f"medbench_kormedmcqa_{e}{s}"
    for e in ("doctor", "nurse", "pharm", "dentist")
    for s in ("", "_gen", "_fewshot", "_cot", "_cloze")
] + [f"medbench_medqa_usmle{s}" for s in ("", "_gen", "_fewshot", "_cot", "_cloze")]
GROUPS = [f"medbench_kormedmcqa{s}" for s in ("", "_gen", "_fewshot", "_cot", "_cloze")]


def test_every_task_and_group_is_indexed_without_shadowing_builtins(tm):
    ours = {n for n in tm.all_tasks if n.startswith("medbench_")}
    assert ours == set(ALL) | set(GROUPS)
    assert not {"kormedmcqa", "kormedmcqa_doctor", "medqa_4options"} & set(tm.all_tasks)


@pytest.mark.parametrize("name", ALL)
def test_every_task_loads_and_builds_requests(tm, name):
    task = tm.load([name])["tasks"][name]
    docs = task.test_docs()
    assert len(docs) in {435, 878, 885, 811, 1273}
    task.build_all_requests(limit=2, rank=0, world_size=1)
    assert task.instances


def test_group_loads_four_exams(tm):
    loaded = tm.load(["medbench_kormedmcqa_cot"])
    assert sorted(loaded["tasks"]) == [f"medbench_kormedmcqa_{e}_cot" for e in ("dentist", "doctor", "nurse", "pharm")]


def _first_request(tm, name):
    task = tm.load([name])["tasks"][name]
    task.build_all_requests(limit=1, rank=0, world_size=1)
    return task.instances


KOREAN = (
    "2개월 남아가 BCG예방접종 1개월 뒤 주사 부위에 이상반응이 생겨서 예방접종을 실시한 소아청소년과의원을 찾아왔다. "
    "이때 「감염병의 예방 및 관리에 관한 법률」에 따라 예방접종 후 이상반응으로 진단한 원장이 이상반응 발생신고서를 "
    "제출해야 할 대상은?\nA. 대한의사협회장\nB. 보건복지부장관\nC. 남아 소재지 관할 보건소장\n"
    "D. 남아 소재지 관할 시장 ∙ 군수 ∙ 구청장\nE. 남아 소재지 관할 시 ∙ 도지사\n정답："
)


def test_korean_zero_shot_prompt(tm):
    instances = _first_request(tm, "medbench_kormedmcqa_doctor")
    assert [i.args for i in instances] == [(KOREAN, f" {c}") for c in "ABCDE"]
    assert instances[0].doc["answer"] == "C"
    gen = _first_request(tm, "medbench_kormedmcqa_doctor_gen")[0]
    assert gen.args[0] == KOREAN and gen.args[1]["until"] == ["\n\n"]


def test_english_zero_shot_prompt(tm):
    instances = _first_request(tm, "medbench_medqa_usmle")
    ctx = instances[0].args[0]
    assert ctx.startswith("Question: A junior orthopaedic surgery resident is completing a carpal tunnel repair")
    assert ctx.endswith(
        "Which of the following is the correct next action for the resident to take?\n"
        "A. Disclose the error to the patient and put it in the operative report\n"
        "B. Tell the attending that he cannot fail to disclose this mistake\n"
        "C. Report the physician to the ethics committee\n"
        "D. Refuse to dictate the operative report\nAnswer:"
    )
    assert [i.args[1] for i in instances] == [" A", " B", " C", " D"]


def test_fewshot_and_cot_prompts_use_the_fewshot_rows(tm):
    direct = _first_request(tm, "medbench_kormedmcqa_doctor_fewshot")[0].args[0]
    cot = _first_request(tm, "medbench_kormedmcqa_doctor_cot")[0].args[0]
    assert direct.endswith("\n\n" + KOREAN) and cot.endswith("\n\n" + KOREAN)
    assert direct.startswith("13개월 남아가, 형이 하루 전 홍역으로 진단을 받아서 병원에 왔다.")
    shots = direct.split("\n\n")[:5]
    assert [s.rsplit("정답：", 1)[1] for s in shots] == [" E", " A", " C", " D", " B"]
    cot_shots = cot.split("\n\n")[:5]
    assert all(s.rsplit("정답：", 1)[1].startswith(" 차근차근 생각해봅시다.") for s in cot_shots)
    assert cot_shots[0].endswith("따라서, 정답은 (E) 입니다.")
    medqa = _first_request(tm, "medbench_medqa_usmle_fewshot")[0].args[0]
    assert medqa.count("Question: ") == 6 and medqa.endswith("D. Refuse to dictate the operative report\nAnswer:")


def test_medqa_cot_shots_are_the_direct_shots_with_their_rationales(tm):
    direct = _first_request(tm, "medbench_medqa_usmle_fewshot")[0].args[0]
    cot_request = _first_request(tm, "medbench_medqa_usmle_cot")[0]
    cot = cot_request.args[0]
    rationales = yaml.safe_load((tasks_dir() / "medqa" / "cot_rationales.yaml").read_text())
    dev = load_rows("medqa", None, "dev")[:5]
    assert list(rationales) == [r["id"] for r in dev]
    direct_shots, cot_shots = direct.split("\n\n")[:5], cot.split("\n\n")[:5]
    for row, d, c in zip(dev, direct_shots, cot_shots):
        question, target = c.rsplit("\nAnswer: ", 1)
        assert d == f"{question}\nAnswer: {row['answer']}"  # the same rows, in the same order
        assert target == rationales[row["id"]]
        assert target.startswith("Let's think step by step. ") and target.endswith(
            f"Therefore, the answer is ({row['answer']})."
        )
        assert 3 <= target.count(". ") + 1 <= 6 and "\n" not in target  # lead-in + 2–5 sentences; one paragraph
        assert extract_answer(target, 4) == row["answer"]
    assert cot.endswith(direct.split("\n\n")[-1]) and cot.count("Question: ") == 6
    assert cot_request.args[1]["max_gen_toks"] == 512 and cot_request.args[1]["until"] == ["\n\n"]


def test_medqa_cot_refuses_rationales_that_are_not_the_shots(monkeypatch, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("medqa_task_utils", tasks_dir() / "medqa" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    stale = tmp_path / "cot_rationales.yaml"
    stale.write_text("medqa-000000000000: Let's think step by step. Therefore, the answer is (A).\n")
    monkeypatch.setattr(utils, "RATIONALES_PATH", stale)
    with pytest.raises(ValueError, match="must hold the first 1 dev rows"):
        utils.load_dataset_cot(dataset="medqa")


def test_task_selection():
    assert task_names("zeroshot", "mc", []) == [f"medbench_{t}" for t in SHORT_TASKS]
    assert task_names("zeroshot", "gen", ["medqa"]) == ["medbench_medqa_usmle_gen"]
    assert task_names("cot", "gen", []) == [
        f"medbench_kormedmcqa_{e}_cot" for e in ("doctor", "nurse", "pharm", "dentist")
    ] + ["medbench_medqa_usmle_cot"]
    assert task_names("cot", "gen", ["medqa_usmle"]) == ["medbench_medqa_usmle_cot"]
    assert task_names("fewshot", "gen", ["kormedmcqa_pharm"]) == ["medbench_kormedmcqa_pharm_fewshot"]
    with pytest.raises(RunError, match="unknown task 'kormedmcqa_surgeon'"):
        task_names("zeroshot", "mc", ["kormedmcqa_surgeon"])


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_tasks_readme_is_current():
    assert readme_path().read_text() == render_readme(), "run `just tasks-readme`"


def test_readme_tables_copy_their_source_of_truth():
    """Settings, variants, methods and models tables between markers equal what their YAML/dataclass says."""
    from medbench.cli import readme_tables

    for path in readme_tables.readme_paths():
        text = path.read_text()
        assert readme_tables.render(text) == text, f"{path} is out of date: run `just tasks-readme`"
    readme = readme_tables.readme_paths()[0].read_text()
    for name in readme_tables.TABLES:
        assert f"<!-- table:{name}:start -->" in readme
