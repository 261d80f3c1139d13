"""EC2 and Auto Scaling, local: instance processes, their boot, and rolling updates."""
