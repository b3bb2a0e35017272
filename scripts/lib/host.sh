# Shared by scripts/ferrite and scripts/test: make sure the host has what Ferrite needs,
# installing Debian packages when they are missing and this runs as root (or with sudo that
# asks no password). Sourced, not run.

# Debian packages the `ferrite` binary needs. The desktop window (--display window) loads
# these libraries when it opens: X11 and its extensions, xkbcommon for the keyboard, the
# Vulkan loader and EGL for wgpu (without a driver behind them it draws with the CPU); the
# sound output (cpal) builds against ALSA's headers, found through pkg-config.
FERRITE_BUILD_PACKAGES=(libx11-6 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 libvulkan1 libegl1 pkg-config libasound2-dev)
# Debian packages only the tests need: nasm for the check that roms/build/ is what
# roms/build.sh makes; qemu-utils (qemu-img, qemu-io) for disk-image interoperability;
# seabios for its BIOS and VGA BIOS (vgabios-stdvga.bin) driving the VGA model and the guest
# boots; memtest86+ for its ISO; what tests/linux/build.sh makes the Linux disk and CD with;
# grub-pc-bin and grub-common for the GRUB CD that Ferrite's BIOS boots (tests/tests/bios.rs);
# for the window tests an X server (xvfb), xdotool to type, ImageMagick's import to photograph
# the window, xwininfo (x11-utils), and Mesa's software Vulkan and GL drivers for wgpu; nasm
# also builds the sound test guests, and sox measures what --audio-out recorded; gcc and
# libc6-dev build the Linux guest's static disk tool (tests/linux/diskio.c).
FERRITE_TEST_PACKAGES=(nasm qemu-utils seabios memtest86+ busybox-static dosfstools mtools syslinux
    syslinux-common isolinux xorriso grub-pc-bin grub-common xvfb xdotool imagemagick x11-utils
    mesa-vulkan-drivers libgl1-mesa-dri libegl-mesa0 sox gcc libc6-dev)

_ferrite_apt_updated=

# missing_packages PKG...: prints those not installed.
missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

# install_packages PKG...: installs the missing ones; fails if that is not possible.
install_packages() {
    local missing
    command -v dpkg-query >/dev/null 2>&1 || { echo "$0: not a Debian system: install $* yourself" >&2; return 1; }
    missing=($(missing_packages "$@"))
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "$0: missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
            return 1
        fi
    fi
    echo "$0: installing ${missing[*]}" >&2
    if [ -z "$_ferrite_apt_updated" ]; then
        "${sudo[@]}" apt-get update -qq >&2 || return 1
        _ferrite_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# need_packages PKG...: as install_packages, and stop if they cannot be had.
need_packages() {
    [ $# -eq 0 ] && return 0
    install_packages "$@" || { echo "$0: cannot go on without: $*" >&2; exit 1; }
}

# want_packages PKG...: as install_packages, but only warn if they cannot be had.
want_packages() {
    [ $# -eq 0 ] && return 0
    install_packages "$@" || echo "$0: warning: could not install $*; the tests that need them will say they skipped" >&2
}

# need_cargo: cargo on PATH (rustup's default place included), or stop with a clear message.
need_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || {
        echo "$0: cargo not found: Ferrite needs a Rust toolchain (1.80 or later, e.g. from rustup)" >&2
        exit 1
    }
}
