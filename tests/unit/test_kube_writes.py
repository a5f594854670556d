"""KubeApi.create_job sends the builders' dict as it is, and maps the apiserver's answer: created
is True, a name already taken (409) is False, a Job refused as invalid (400, 422) is JobRefused
with the apiserver's words, anything else raises. No apiserver: the client's transport is
replaced by a recorder (the cluster tier sends the same to a real one)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes import client

from paraflow.k8s.api import JobRefused, KubeApi

pytestmark = pytest.mark.unit

BODY = {"metadata": {"name": "wf-p3-a1", "namespace": "ns", "labels": {"a": "ü"}}, "spec": {"parallelism": 1}}


class Answer:
    """What urllib3 hands back, as far as the client and KubeApi read it."""

    def __init__(self, status: int, message: str = "") -> None:
        self.status, self.reason, self.headers = status, "reason", {}
        self.data = json.dumps({"message": message}).encode()
        self.released = False

    def drain_conn(self) -> None:
        pass

    def release_conn(self) -> None:
        self.released = True


def create(status: int, message: str = "") -> tuple[Any, list[tuple[Any, ...]], Answer]:
    api = KubeApi(client.ApiClient(), 1, 100, write_burst=10, request_timeout=5)
    sent: list[tuple[Any, ...]] = []
    answer = Answer(status, message)

    class Response:
        response = answer

    def call_api(*request: Any, _request_timeout: float) -> Response:
        sent.append(request)
        return Response()

    api.writer.call_api = call_api  # type: ignore[method-assign]
    try:
        return asyncio.run(api.create_job(BODY)), sent, answer
    except Exception as e:  # the test asserts on what was raised
        return e, sent, answer
    finally:
        api.close()


def test_a_created_job_is_true_and_the_body_is_posted_as_the_builders_made_it() -> None:
    made, sent, answer = create(201)
    assert made is True and answer.released
    [(method, url, headers, body, *_)] = sent
    assert method == "POST" and url.endswith("/apis/batch/v1/namespaces/ns/jobs")
    assert headers["Content-Type"] == "application/json"
    assert body == BODY


def test_a_name_already_taken_is_false() -> None:
    assert create(409)[0] is False


@pytest.mark.parametrize("status", [400, 422])
def test_a_job_refused_as_invalid_is_job_refused_with_the_apiservers_words(status: int) -> None:
    refused, _, _ = create(status, 'Job.batch "wf-p3-a1" is invalid: spec.template: Required value')
    assert isinstance(refused, JobRefused)
    assert str(refused) == 'Job.batch "wf-p3-a1" is invalid: spec.template: Required value'


def test_any_other_answer_raises_for_the_pass_to_retry() -> None:
    failed, _, _ = create(500, "etcdserver: request timed out")
    assert isinstance(failed, client.ApiException) and not isinstance(failed, JobRefused)
    assert failed.status == 500
