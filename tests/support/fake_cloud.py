"""A base for fake clouds in unit tests: every port verb a test does not script refuses.

A fake names only what its test drives; a verb the code under test was not expected to call
raises, so the test sees it instead of a silent default.
"""

from __future__ import annotations

from deployer.cloud.port import CloudPort


class UnscriptedCloud(CloudPort):
    name = "fake"
    fetches_releases_on_this_machine = False

    def ensure_environment(self, strategy, template, parameters, on_event):
        raise NotImplementedError

    def describe_environment(self, strategy):
        return None

    def destroy_environment(self, strategy, on_event):
        raise NotImplementedError

    def destroy_all(self, on_event):
        raise NotImplementedError

    def update_stack(self, strategy, parameters, on_event):
        raise NotImplementedError

    def wait_for_stack_operation(self, strategy, on_event):
        raise NotImplementedError

    def put_artifact(self, strategy, key, path):
        raise NotImplementedError

    def deploy_revision(self, strategy, revision, on_event, **kwargs):
        raise NotImplementedError

    def build_image(self, template, variables, on_event):
        raise NotImplementedError

    def list_images(self):
        return []

    def target_health(self, strategy):
        return []
