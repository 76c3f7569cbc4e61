"""Metric networks and metric maths: Inception (FID/KID/IS), LPIPS, PSNR/SSIM, CLIP score, PPL, 3D metrics.

The command lines over them live in evaluate/.
"""
