package io.qblk.io;

/** Linux x86_64 errno values the project names in messages and returns to kernels and clients. */
public final class Errno {
    public static final int EPERM = 1, ENOENT = 2, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7, EBADF = 9,
            EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17, ENODEV = 19,
            EINVAL = 22, EFBIG = 27, ENOSPC = 28, ESPIPE = 29, EROFS = 30, ENOLCK = 37, ENOSYS = 38, ENOTSUP = 95,
            EOPNOTSUPP = 95, ETIMEDOUT = 110, ECANCELED = 125,
            EOVERFLOW = 75, ESHUTDOWN = 108, EDQUOT = 122;

    private Errno() {}

    public static String name(int errno) {
        return switch (errno) {
            case EPERM -> "EPERM"; case ENOENT -> "ENOENT"; case EINTR -> "EINTR"; case EIO -> "EIO";
            case ENXIO -> "ENXIO"; case E2BIG -> "E2BIG"; case EBADF -> "EBADF"; case EAGAIN -> "EAGAIN";
            case ENOMEM -> "ENOMEM"; case EACCES -> "EACCES"; case EFAULT -> "EFAULT"; case EBUSY -> "EBUSY";
            case EEXIST -> "EEXIST"; case ENODEV -> "ENODEV"; case EINVAL -> "EINVAL"; case EFBIG -> "EFBIG";
            case ENOSPC -> "ENOSPC"; case ESPIPE -> "ESPIPE"; case EROFS -> "EROFS"; case ENOLCK -> "ENOLCK"; case ENOSYS -> "ENOSYS";
            case EOPNOTSUPP -> "EOPNOTSUPP"; case ETIMEDOUT -> "ETIMEDOUT"; case ECANCELED -> "ECANCELED";
            case EOVERFLOW -> "EOVERFLOW"; case ESHUTDOWN -> "ESHUTDOWN"; case EDQUOT -> "EDQUOT";
            default -> "errno " + errno;
        };
    }

    public static String describe(int errno) {
        return switch (errno) {
            case EPERM -> "operation not permitted"; case ENOENT -> "no such file or directory";
            case EIO -> "input/output error"; case ENOSPC -> "no space left on device";
            case EACCES -> "permission denied"; case EINVAL -> "invalid argument";
            case EROFS -> "read-only file system"; case ENODEV -> "no such device";
            case EOPNOTSUPP -> "operation not supported"; case EBUSY -> "device or resource busy";
            case EEXIST -> "file exists"; case ENOSYS -> "function not implemented";
            case ENOMEM -> "out of memory"; case EAGAIN -> "resource temporarily unavailable";
            default -> "see errno(3)";
        };
    }
}
