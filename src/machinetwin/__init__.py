"""machinetwin: connect a lab to remote CNC machine tools through virtual twins.

Collects machine data, mirrors each machine in a twin that runs the same
program, and supports remote monitoring, diagnosis and safe remote control.
"""

__version__ = "0.1.0"
