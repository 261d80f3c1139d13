"""EC2 images, local: Packer builds run against the local cloud, images as snapshots."""
