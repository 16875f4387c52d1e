"""The one compiled part: the fan-out's send loop (peerspark_rt/actors/_fanout.c). Optional: where
no C compiler is found the package installs without it and every room frame takes the checked
Python way (actors/connection.py), slower but the same on the wire."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "peerspark_rt.actors._fanout",
            ["peerspark_rt/actors/_fanout.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
