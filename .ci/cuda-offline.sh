# Sourced (bash): lets Burn 0.22.1's `cuda` feature build without internet, against Debian's
# LLVM 22 (apt packages llvm-22-dev libpolly-22-dev libzstd-dev). cubecl-llvm's bundler skips its
# download when this directory holds its sentinel file (verified for bundler 23.1.0-4, cubecl
# 0.11.3; a cubecl release that bumps the bundler needs the new directory name).
llvm_dir="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
mkdir -p "$llvm_dir"
for d in bin include lib share cmake; do ln -sfn "/usr/lib/llvm-22/$d" "$llvm_dir/$d"; done
touch "$llvm_dir/.tracel-llvm-installed"
# llvm-config names /usr/lib/x86_64-linux-gnu/libz3.so, which the bundler turns into -llibz3.
# A fixed directory: LIBRARY_PATH is part of what cargo fingerprints, so a new one each time would
# rebuild the LLVM-linked crates.
link_dir="${XDG_CACHE_HOME:-$HOME/.cache}/burn-novograd/llvm-link"
mkdir -p "$link_dir"
ln -sfn /usr/lib/x86_64-linux-gnu/libz3.so "$link_dir/liblibz3.so"
export LIBRARY_PATH="$link_dir${LIBRARY_PATH:+:$LIBRARY_PATH}"
