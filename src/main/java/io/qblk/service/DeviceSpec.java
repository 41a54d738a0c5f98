package io.qblk.service;

import java.nio.file.Path;

/**
 * A validated device definition, from configuration or from {@code POST /devices}.
 *
 * @param image      the image file (real path for API requests); null for the null target
 * @param nbdAddress host:port the NBD export listens on (NBD frontend only)
 * @param createSize create the image with this size when it is missing; 0 = never create
 * @param cache      the image's page-cache use; null = the frontend's default ({@code qblk.ublk.cache} for
 *                   ublk, writeback for NBD)
 */
public record DeviceSpec(String name, Path image, io.qblk.target.ImageFormat target, FrontendType frontend, int queues, int depth,
                         boolean readOnly, String nbdAddress, long createSize, io.qblk.io.CacheMode cache) {
}
