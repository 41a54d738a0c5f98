package io.qblk.io;

import java.io.IOException;

/** A failed system call, carrying the errno value and its symbolic name (EIO, ENOSPC, ...). */
public class ErrnoException extends IOException {
    private final int errno;

    public ErrnoException(String operation, int errno) {
        super(operation + ": " + Errno.name(errno) + " (" + Errno.describe(errno) + ")");
        this.errno = errno;
    }

    public int errno() {
        return errno;
    }

    public String errnoName() {
        return Errno.name(errno);
    }
}
