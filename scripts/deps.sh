# Sourced by demo.sh and test.sh: makes sure Go and the system packages keepup needs are there.
# Installs missing Debian packages when run as root; otherwise prints the exact command.

need() { command -v "$1" >/dev/null 2>&1; }

if ! need go; then
  echo "keepup needs Go 1.26 or newer: see https://go.dev/doc/install" >&2
  exit 2
fi

# command -> Debian package: git, and bubblewrap (the sandbox every command runs in), plus
# what the caller lists in extra_deps (test.sh: the tools the tests run inside sandboxes).
missing=()
for pair in git:git bwrap:bubblewrap ${extra_deps:-}; do
  need "${pair%%:*}" || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "missing: ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
fi
export CGO_ENABLED=0
