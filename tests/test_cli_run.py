"""``xaitrust run``: user mistakes give one readable line and exit code 2, before any work starts."""

from click.testing import CliRunner

from xaitrust.cli import cli


def test_unknown_config_key_is_reported_without_a_traceback(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('n_imgs = 3\n')
    result = CliRunner().invoke(cli, ["run", "benchmark", "--profile", "smoke", "--config", str(config),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "unknown config key 'n_imgs'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # validation happens before the run folder is written


def test_malformed_toml_and_unknown_protocol_are_usage_errors(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("n_images = \n")
    result = CliRunner().invoke(cli, ["run", "roar", "--config", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "is not valid TOML" in result.output
    result = CliRunner().invoke(cli, ["run", "rooar"])
    assert result.exit_code == 2 and "rooar" in result.output


def test_roar_fraction_outside_the_open_interval_names_the_key(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("fractions = [0.5, 1.0]\n")
    result = CliRunner().invoke(cli, ["run", "roar", "--profile", "smoke", "--config", str(config),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "'fractions'" in result.output


def test_threads_below_one_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["run", "benchmark", "--threads", "0", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--threads" in result.output and "x>=1" in result.output
    assert not (tmp_path / "run").exists()


def test_check_validates_data_and_model_prints_the_plan_and_writes_nothing(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('dataset = "digits"\ncalibration_size = 100\nn_images = 4\n'
                      'explainers = ["saliency", "gradcam", "guided-backprop"]\nmodel = "lipschitz-cnn"\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "benchmark", "--profile", "smoke", "--config", str(config), "--check",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "config valid" in result.output and "trainings: 1 of 1 epochs" in result.output
    assert "left out: guided-backprop" in result.output  # lipschitz-cnn has no rule for MaxMin
    assert not out.exists()
    config.write_text('dataset = "digits"\ncalibration_size = 1000\n')
    result = CliRunner().invoke(cli, ["run", "benchmark", "--profile", "smoke", "--config", str(config), "--check"])
    assert result.exit_code == 2 and "calibration_size = 1000 leaves no held-out images" in result.output
