#!/bin/bash
# Build a tiny initramfs (busybox + ipvsadm + kernel modules) for the Debian kernel, for tests/ipvs.
# Adapted from the ipvs-lab recipe. Usage: build-initramfs.sh OUTDIR  (env K = kernel release)
set -euo pipefail
K=${K:-$(ls -1v /boot/vmlinuz-* | tail -1 | sed "s,.*/vmlinuz-,,")}
W=${1:?usage: build-initramfs.sh OUTDIR}
R=$W/root
rm -rf "$R"; mkdir -p "$R"/{bin,sbin,proc,sys,dev,tmp,run,host,share,lib/modules/$K,etc}
cp /bin/busybox "$R/bin/busybox"          # busybox-static
# ipvsadm + its shared libs
cp /usr/sbin/ipvsadm "$R/sbin/"
for l in $(ldd /usr/sbin/ipvsadm | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname $l)"; cp -L "$l" "$R$l"; done
# modules (with deps), keep tree layout, then depmod
MODS="virtio_mmio ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc ip_vs_lc ip_vs_sh 9p 9pnet_virtio virtio_pci virtio_console overlay veth bridge"
for m in $MODS; do modprobe -S $K --show-depends $m | awk '/^insmod/{print $2}'; done | sort -u | while read f; do
  mkdir -p "$R$(dirname $f)"; cp "$f" "$R$f"; done
cp /lib/modules/$K/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$K/" 2>/dev/null || true
depmod -b "$R" $K
cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo /sbin/modprobe > /proc/sys/kernel/modprobe; ln -s /bin/modprobe /sbin/modprobe 2>/dev/null
for m in virtio_pci virtio_mmio 9pnet_virtio 9p $(echo "$mods" | tr , " "); do modprobe $m; done
ip link set lo up
# host share (rw) with scripts/results; optional read-only host root for python
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /share && echo "share mounted"
if grep -q hostroot /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null; then
  # host / read-only over 9p, made writable in the guest with a tmpfs overlay (writes vanish at poweroff)
  mkdir -p /lower /rw; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro,cache=loose hostroot /lower
  mount -t tmpfs -o size=512m tmpfs /rw; mkdir -p /rw/upper /rw/work
  modprobe overlay; mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /host && echo "hostroot mounted (overlay)"
  mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount -t devtmpfs dev /host/dev
  mount -t tmpfs tmpfs /host/run
  mkdir -p /host/mnt/share; mount --bind /share /host/mnt/share
fi
echo "BOOT_DONE uptime $(cut -d' ' -f1 /proc/uptime)"
if [ -x /share/run.sh ]; then /share/run.sh; echo $? > /share/rc; else setsid cttyhack sh; fi
echo "END uptime $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > $W/initramfs.cpio.gz
rm -rf "$R"
