package io.qblk.qcow2;

/**
 * One extent of {@code qemu-img map --output=json}.
 *
 * @param start   guest offset
 * @param length  bytes
 * @param depth   0 = this image, 1 = its backing file, ...; for unallocated ranges the chain length
 * @param present data (or zeroes) come from some image of the chain
 * @param zero    the range reads as zeroes
 * @param data    host clusters hold the data
 * @param offset  host offset of the data in the image at {@code depth}, -1 when there is none
 */
public record MapEntry(long start, long length, int depth, boolean present, boolean zero, boolean data, long offset) {
}
