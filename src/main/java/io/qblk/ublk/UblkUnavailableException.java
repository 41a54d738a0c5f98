package io.qblk.ublk;

/** The running kernel has no ublk driver: every ublk command fails with this one message. */
public final class UblkUnavailableException extends UblkException {
    /** Exit code of every qblk ublk command on a kernel without ublk (EX_UNAVAILABLE). */
    public static final int EXIT_CODE = 69;

    public UblkUnavailableException() {
        super("this kernel has no ublk driver (CONFIG_BLK_DEV_UBLK; /dev/ublk-control is missing and modprobe ublk_drv"
                + " did not help), use --nbd or the VM harness (xfstests-runner/vm-run)");
    }
}
