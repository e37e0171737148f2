"""reid_aug.records: one reader for every record, typed records, and 0.1 files still load."""
from pathlib import Path

import pytest

from reid_aug.errors import RecordError
from reid_aug.records import (BenchmarkResults, EvaluationRecord, SynthesisDescriptor, read_csv, read_json,
                              read_json_object, read_yaml)

OLD = Path(__file__).parent / "data" / "v0.1"


@pytest.mark.parametrize("reader", [read_json, read_json_object, read_yaml, read_csv])
def test_binary_or_broken_files_are_one_line_record_errors(tmp_path, reader):
    binary = tmp_path / "results.json"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(RecordError) as err:
        reader(binary)
    assert str(binary) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RecordError, match="does not exist"):
        reader(tmp_path / "missing.json")


def test_malformed_text_records(tmp_path):
    (tmp_path / "a.json").write_text('{"runs": [1, 2')
    with pytest.raises(RecordError, match="invalid JSON"):
        read_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(RecordError, match="expected a JSON object"):
        read_json_object(tmp_path / "b.json")
    (tmp_path / "c.yaml").write_text("a: [1, 2\n")
    with pytest.raises(RecordError, match="invalid YAML"):
        read_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.csv").write_text("from,to\na,b\n")
    with pytest.raises(RecordError, match="column"):
        read_csv(tmp_path / "d.csv", required=("file", "pid"))


def test_old_evaluation_record_reads_and_round_trips(tmp_path):
    rec = EvaluationRecord.read(OLD / "eval_metrics.json")
    model = rec.row("model")
    assert model is not None and rec.value("ssim") == model["ssim"]
    assert rec.value("ssim", protocol="pg2") == model["ssim_by_protocol"]["pg2"]
    assert rec.value("is") is None                      # no Inception weights when it was written
    assert {r["row"] for r in rec.records} == {"model", "real_vs_real", "copy_source"}
    rec.write(tmp_path / "m.json")
    again = EvaluationRecord.read(tmp_path / "m.json")
    assert again == rec and read_json(tmp_path / "m.json")["schema_version"] == EvaluationRecord.VERSION


def test_old_synthesis_descriptor_and_results_read():
    desc = SynthesisDescriptor.read(OLD / "synthesis.json")
    assert desc.run["poses_per_id"] == 3 and desc.dataset.endswith("data")
    res = BenchmarkResults.read(OLD / "results.json")
    assert set(res.runs) == {"baseline_seed0", "augmented_seed0"}
    # 0.1 called generated images "synthetic"; the typed record renames the field.
    assert res.runs["augmented_seed0"]["n_train_synthesized"] == 72
    assert "n_train_synthetic" not in res.runs["augmented_seed0"]


def test_records_refuse_other_kinds_and_newer_versions(tmp_path):
    from reid_aug.records import write_json

    write_json(tmp_path / "x.json", {"schema": "reid-aug/evaluation", "schema_version": 99, "headline": {},
                                     "records": []})
    with pytest.raises(RecordError, match="upgrade reid-aug"):
        EvaluationRecord.read(tmp_path / "x.json")
    with pytest.raises(RecordError, match="not a synthesis descriptor"):
        SynthesisDescriptor.read(OLD / "eval_metrics.json")
