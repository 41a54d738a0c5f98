package io.qblk.qcow2;

/**
 * The fields of {@code qemu-img info --output=json} for a qcow2 image.
 *
 * @param actualSize bytes the image file occupies (file length when the backend cannot tell allocated blocks)
 * @param backingFilename null when the image has no backing file
 * @param backingFormat   null when the header does not name one
 * @param dataFile        external data file name from the header, null for none
 * @param dataFileRaw     autoclear bit "raw external data"
 * @param encryption      how the image is encrypted (format, and the LUKS header fields), null when it is not
 */
public record ImageInfo(long virtualSize, String filename, int clusterSize, String format, long actualSize,
        boolean dirtyFlag, String compat, boolean lazyRefcounts, int refcountBits, boolean corrupt,
        boolean extendedL2, String compressionType, String backingFilename, String backingFormat,
        String dataFile, boolean dataFileRaw, EncryptionHeader encryption) {
}
