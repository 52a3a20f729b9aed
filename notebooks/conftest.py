"""nbval runs the chapters in kernels that inherit this process's environment: the pinned paths."""

from blending.companion import numerics

numerics.pin()
