package io.qblk.ublk;

import io.qblk.io.Errno;

import java.io.IOException;

/** A ublk control or queue command failed; carries the kernel's errno (0 when not from the kernel). */
public class UblkException extends IOException {
    private final int errno;

    public UblkException(String message) {
        this(message, 0);
    }

    public UblkException(String message, int errno) {
        super(message);
        this.errno = errno;
    }

    static UblkException fromErrno(String what, int errno) {
        return new UblkException(what + ": " + Errno.name(errno) + " (" + Errno.describe(errno) + ")", errno);
    }

    public int errno() {
        return errno;
    }
}
