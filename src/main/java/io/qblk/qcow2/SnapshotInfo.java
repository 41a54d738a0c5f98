package io.qblk.qcow2;

/**
 * One internal snapshot as {@code qemu-img info} and {@code qemu-img snapshot -l} describe it.
 *
 * @param vmStateSize bytes of saved VM state (0 for disk-only snapshots)
 * @param icount      instruction count when taken, -1 when the entry does not record one
 */
public record SnapshotInfo(String id, String name, long dateSec, long dateNsec, long vmClockNsec, long vmStateSize, long icount) {
}
