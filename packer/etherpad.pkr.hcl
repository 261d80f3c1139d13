# An Etherpad image: Ubuntu 22.04 with one Etherpad release installed in /opt/etherpad, so
# that an instance booted from it only writes its settings and starts (DESIGN.md, packer).
#
#   packer build -var etherpad_version=1.8.18 packer/etherpad.pkr.hcl
#
# The deployer's local cloud runs this same file: its image builder executes the
# provisioners below on a local build host and writes the same manifest.
#
# No required_plugins block: Packer 1.6 has the amazon builder built in and rejects the
# block; Packer 1.7+ gets the plugin with `packer plugins install github.com/hashicorp/amazon`.

packer {
  required_version = ">= 1.6.6"
}

variable "etherpad_version" {
  type        = string
  description = "The Etherpad release to bake into the image, e.g. 1.8.18 (a git tag of ether/etherpad-lite)."

  validation {
    condition     = length(var.etherpad_version) > 0
    error_message = "The etherpad_version variable must name a release, e.g. 1.8.18."
  }
}

variable "etherpad_source" {
  type        = string
  default     = "github"
  description = "Where the installer fetches the release: github, npm, or a git mirror URL or path."
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "source_ami_name" {
  type        = string
  default     = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
  description = "Name pattern of the base image; the newest match is used."
}

variable "source_ami_owner" {
  type        = string
  default     = "099720109477"
  description = "Account that publishes the base image (Canonical)."
}

variable "ami_name_prefix" {
  type    = string
  default = "etherpad"
}

locals {
  # AMI names must be unique per account and region; a build time keeps rebuilds apart.
  build_time = formatdate("YYYYMMDDhhmmss", timestamp())
  ami_name   = "${var.ami_name_prefix}-${var.etherpad_version}-${local.build_time}"
}

source "amazon-ebs" "etherpad" {
  ami_name        = local.ami_name
  ami_description = "Etherpad ${var.etherpad_version} on Ubuntu 22.04"
  instance_type   = var.instance_type
  region          = var.region
  ssh_username    = "ubuntu"

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }

  tags = {
    Name        = local.ami_name
    Application = "etherpad"
    Release     = var.etherpad_version
  }
  snapshot_tags = {
    Application = "etherpad"
    Release     = var.etherpad_version
  }
}

build {
  name    = "etherpad"
  sources = ["source.amazon-ebs.etherpad"]

  # The asset folder (installer, start/stop scripts, settings template, version plugin).
  # No trailing slash: the folder itself lands in /tmp, as /tmp/etherpad.
  provisioner "file" {
    source      = "${path.root}/../etherpad"
    destination = "/tmp"
  }

  # provision.sh is uploaded to remote_folder too and finds the assets beside itself.
  # ETHERPAD_HOME is not set here: the script defaults to /opt/etherpad, and the local
  # cloud's build host sets its own under the host's root.
  provisioner "shell" {
    script        = "${path.root}/provision.sh"
    remote_folder = "/tmp"
    environment_vars = [
      "ETHERPAD_RELEASE=${var.etherpad_version}",
      "ETHERPAD_SOURCE=${var.etherpad_source}",
    ]
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'"
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      release = var.etherpad_version
      source  = var.etherpad_source
    }
  }
}
