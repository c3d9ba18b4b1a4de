"""The pieces of ``invoke release``; :mod:`mlci.stages.release` runs them in order.

- :mod:`.preflight`: what is refused before anything is built (tree, tag, versions);
- :mod:`.build`: sdist and wheel of each package from a clean copy, then ``twine check``;
- :mod:`.index`: what the package index already has (its simple API), and the upload plan;
- :mod:`.publish`: the upload, the check after it, the model record and the release notes.

Each module imports its heavy libraries (requests, twine, pypi-simple) inside the functions
that use them, so importing the stage stays cheap.
"""
