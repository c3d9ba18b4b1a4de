"""Release checks made before anything is built: a commit to release from, a clean tree,
a version tag on HEAD that matches every package's version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from mlci.context import StageContext
from mlci.errors import ConfigError, ReleaseRefused
from mlci.lineage import UNKNOWN, git_info, package_metadata, tags_at_head


@dataclass(frozen=True)
class PackagePlan:
    """A package folder to release, with the name and version its backend will build."""

    folder: str
    path: Path
    name: str
    version: str


def tag_version(tag: str) -> Version | None:
    """The version a git tag names (``v1.2.0`` -> 1.2.0), or None for any other tag."""
    try:
        return Version(tag)  # PEP 440 allows the leading "v"
    except InvalidVersion:
        return None


def _same_version(version: str, wanted: set[Version]) -> bool:
    try:
        return Version(version) in wanted
    except InvalidVersion:
        return False


def package_plans(ctx: StageContext) -> list[PackagePlan]:
    """Each folder of ``release.packages`` with its name and version."""
    settings = ctx.settings
    packages = []
    for folder in settings.release.packages:
        package_dir = settings.path(folder)
        if not (package_dir / "pyproject.toml").is_file():
            raise ConfigError(
                f"release.packages names {folder!r}, which has no pyproject.toml",
                "each entry must be a package folder",
                "fix [tool.mlci.release] packages or MLCI_RELEASE_PACKAGES",
            )
        name, version = package_metadata(package_dir)
        packages.append(PackagePlan(folder, package_dir, name, version))
    return packages


def preflight(ctx: StageContext) -> list[PackagePlan]:
    """Refuse before anything is built: dirty tree, untagged commit, tag/version mismatch."""
    settings = ctx.settings
    root = settings.project_root
    packages = package_plans(ctx)
    git = git_info(root)
    if git.sha == UNKNOWN:
        # No commit to build from: versions from git tags would fall back to 0.0.0, and
        # nothing could trace the release back to its source (release.allow_dev included).
        shown = ", ".join(f"{p.name} {p.version}" for p in packages)
        raise ReleaseRefused(
            f"{root} has no git commit to release from",
            f"it is not a git repository, or one without a commit; the packages would go out "
            f"as {shown}, traceable to nothing",
            "release from a git checkout with the commit tagged (git tag v1.2.0), e.g. a clone "
            "rather than an exported tree",
        )
    allow_dev = settings.release.allow_dev
    if git.dirty and not allow_dev:
        raise ReleaseRefused(
            "the work tree has uncommitted changes",
            "a release must be built from a commit, so that it can be rebuilt and traced",
            "commit or stash the changes (git status shows them), or set release.allow_dev "
            "for a .devN release",
        )
    if git.dirty:
        # setuptools-scm marks tracked changes (+...dYYYYMMDD) but not untracked files, and a
        # static version never changes: such work would go out under a real version.
        clean_versions = [
            f"{p.name} {p.version}"
            for p in packages
            if "+" not in p.version and ".dev" not in p.version
        ]
        if clean_versions:
            raise ReleaseRefused(
                "the work tree has uncommitted changes that would be released as "
                + ", ".join(clean_versions),
                "only a .devN version may carry uncommitted work; this one would later clash "
                "with the real release of that version",
                "commit or remove the changes (git status shows them), then release",
            )
    tagged = {tag: tag_version(tag) for tag in tags_at_head(root)}
    versions = {tag: version for tag, version in tagged.items() if version is not None}
    if not versions:
        if not allow_dev:
            raise ReleaseRefused(
                f"HEAD ({git.short_sha}) has no version tag",
                "releases are made from tags such as v1.2.0",
                "tag the commit (git tag v1.2.0 && git push --tags), or set release.allow_dev "
                "for a .devN release",
            )
        return packages
    wanted = set(versions.values())
    wrong = [f"{p.name} {p.version}" for p in packages if not _same_version(p.version, wanted)]
    if wrong:
        raise ReleaseRefused(
            f"the tag {', '.join(sorted(versions))} does not match the packages' versions",
            "packages at other versions: " + ", ".join(wrong),
            "make the versions come from the tag (hatch-vcs) or fix the static version, "
            "then move the tag",
        )
    return packages
