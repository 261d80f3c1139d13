"""The Packer template (HCL2) reader: variables, locals, sources and provisioners.

Shared by the AWS adapter (which runs the real ``packer``), ``validate`` and the local
cloud's image builder. Imports only ``base``. ``template`` reads a file into the ``model``;
``variables`` applies type constraints; ``expressions`` parses and evaluates HCL
expressions over ``values`` with the ``functions`` a template may call; ``manifest`` writes
and reads the manifest post-processor's file.
"""
