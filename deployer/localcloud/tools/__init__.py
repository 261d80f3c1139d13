"""What an instance finds on its PATH: ``cfn-signal`` and ``aws``, talking to the supervisor."""
