from omegaconf import OmegaConf

from mnist_pruning.train import threads_per_job


def test_threads_share_the_cores_among_parallel_jobs(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    basic = OmegaConf.create({"launcher": {"_target_": "basic"}})
    assert threads_per_job(None, basic) == 8
    assert threads_per_job(3, basic) == 3
    assert threads_per_job(None, OmegaConf.create({"launcher": {"n_jobs": 2}})) == 4
    assert threads_per_job(None, OmegaConf.create({"launcher": {"n_jobs": -1}})) == 1
    assert threads_per_job(None, OmegaConf.create({"launcher": {"n_jobs": 16}})) == 1
    assert threads_per_job(None, OmegaConf.create({"launcher": {"cpus_per_task": 2}})) == 2
