"""CodeDeploy, local: deployments and their configs, the agent, appspec.yml, installs."""
