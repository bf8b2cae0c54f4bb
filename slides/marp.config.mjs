// Marp CLI settings for every deck (slides/build.sh passes --config-file).
export default {
  themeSet: './themes',
  allowLocalFiles: true, // without it local images are left blank in the PDF, and marp still exits 0
  browserPath: '/usr/bin/chromium',
  html: false,
  options: { emoji: { shortcode: false, unicode: false } }, // emoji would be CDN images
};
